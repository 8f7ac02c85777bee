# ngx_http_insite_gdpr_module: every directive through nginx (2 workers),
# the record format, records one-to-one with requests under concurrent
# load, the hash chain (insite-auditd verify, tampering), rotation, chain
# continuity across kill -9 of a worker and reload, and a full or
# unwritable journal in both fail modes.
#
# INSITE_AUDITD_BIN picks the verifier (default build/bin/insite-auditd).

use strict;
use warnings;
use lib 't/lib';

use Cwd qw(getcwd);
use Digest::SHA qw(sha256_hex);
use File::Temp ();
use JSON::PP ();
use POSIX ();
use Test::More;
use Time::HiRes qw(time sleep);
use Time::Local ();

use Insite::Nginx;
use Insite::Services qw(http_request run_cmd);

plan skip_all => 'TEST_NGINX_LOAD_MODULES not set (run under scripts/test.sh)'
    unless defined $ENV{TEST_NGINX_LOAD_MODULES};   # empty: a static nginx
my $root = getcwd();
my $auditd = $ENV{INSITE_AUDITD_BIN} // "$root/build/bin/insite-auditd";
$auditd = "$root/$auditd" unless $auditd =~ m{^/};
plan skip_all => "$auditd not built" unless -x $auditd;

my $json = JSON::PP->new->utf8;
my $tmp = File::Temp::tempdir('insite-gdpr-XXXXXX', TMPDIR => 1, CLEANUP => 1);
chmod 0755, $tmp;
Test::Nginx::Util::spew("$tmp/ok.txt", "ok\n");

sub slurp { local (@ARGV, $/) = @_; my $d = <>; $d // '' }
sub records {
    my ($dir, $want) = @_;
    my @r;
    # a worker's records reach its journal from the ring when it is half
    # full or 5 ms after the first: with $want, wait up to 5 s for that many
    for my $try (1 .. ($want ? 100 : 1)) {
        @r = ();
        for my $f (sort glob "$dir/audit-*.jsonl") {
            push @r, map { $json->decode($_) } grep { length } split /\n/, slurp($f);
        }
        last if !$want || @r >= $want;
        select undef, undef, undef, 0.05;
    }
    return @r;
}
sub verify { my ($out, $rc) = run_cmd(20, $auditd, 'verify', @_); return ($rc, $out) }
sub nginx {
    my (%o) = @_;
    return Insite::Nginx->new(http => $o{http}, server => $o{server});
}
sub wait_for {
    my ($secs, $cond) = @_;
    my $deadline = time + $secs;
    while (time < $deadline) { return 1 if $cond->(); sleep 0.05 }
    return $cond->();
}
# a record's ts as epoch seconds (with the milliseconds)
sub epoch {
    my ($ts) = @_;
    my ($y, $mo, $d, $h, $mi, $s, $ms) = $ts =~ /^(\d+)-(\d+)-(\d+)T(\d+):(\d+):(\d+)\.(\d+)Z$/
        or return -1;
    return Time::Local::timegm($s, $mi, $h, $d, $mo - 1, $y) + $ms / 1000;
}
sub alerts {
    my ($n) = @_;
    return grep { /\[(alert|emerg|crit)\]/ && !/exited on signal 9/ } split /\n/, $n->error_log;
}

# ------------------------------------------------------------------ format
{
    my $j = "$tmp/fmt";
    my $n = nginx(http => "    insite_gdpr_journal $j;\n", server => <<'CONF');
        insite_gdpr_audit_user $http_x_user;
        location /api/v1/portfolio { insite_gdpr_audit on; return 200 "ok\n"; }
        location /api/v1/export { insite_gdpr_audit on; insite_gdpr_access_type export;
                                  insite_gdpr_data_type "report-$arg_kind"; return 200; }
        location /api/v1/search { insite_gdpr_audit on; insite_gdpr_audit_query on; return 404; }
        location /api/v1/public { insite_gdpr_audit on; insite_gdpr_audit_anonymous on; return 200; }
        location /api/v1/default-user { insite_gdpr_audit on; insite_gdpr_audit_user $cookie_none; return 200; }
        location /static { return 200; }
CONF
    my @h = (headers => { 'X-User' => 'alice', 'X-Request-ID' => 'rid-1' });
    my $t0 = time;
    is($n->request('GET', '/api/v1/portfolio/holdings/?secret=1', @h)->{status}, 200, 'GET audited');
    $n->request('POST', '/api/v1/portfolio/holdings', @h, body => '{}');
    $n->request('PUT', '/api/v1/portfolio/holdings', @h, body => '{}');
    $n->request('PATCH', '/api/v1/portfolio/holdings', @h, body => '{}');
    $n->request('DELETE', '/api/v1/portfolio/holdings/42', @h);
    $n->request('HEAD', '/api/v1/portfolio/holdings', @h);
    $n->request('GET', '/api/v1/export?kind=gdpr', @h);
    $n->request('GET', '/api/v1/search?q=tsla', @h);
    $n->request('GET', '/api/v1/public/quotes');                   # anonymous on: recorded
    $n->request('GET', '/api/v1/portfolio/anon');                  # no user: not recorded
    $n->request('GET', '/api/v1/default-user', @h);                # user variable empty
    $n->request('GET', '/static/x', @h);                           # audit off
    $n->request('GET', "/api/v1/portfolio/caf\xc3\xa9\xff", headers => { 'X-User' => "bob\"\\" });
    my @r = sort { $a->{ts} cmp $b->{ts} || $a->{seq} <=> $b->{seq} } records($j, 10);
    is(scalar @r, 10, '10 audited requests, 10 records')
        or diag(join "\n", map { "$_->{method} $_->{path} $_->{status}" } @r);
    my $r0 = (grep { $_->{method} eq 'GET' && $_->{path} =~ /holdings/ } @r)[0];
    is_deeply([sort keys %$r0],
              [sort qw(v id ts user_id data_subject access_type data_type method path status result reason ip request_id worker seq prev_hash hash)],
              'record fields (format 2)');
    is($r0->{v}, 2, 'v: 2');
    is($r0->{reason}, undef, 'reason: null when nothing was refused');
    like($r0->{id}, qr/^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/, 'id: uuid v4');
    like($r0->{ts}, qr/^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$/, 'ts: RFC 3339 UTC, ms');
    # the request's own time: a worker keeps the text of the current second,
    # so a second later both workers' records must have moved on
    my $t1 = time;
    my @out = grep { my $t = epoch($_->{ts}); $t < int($t0) || $t > $t1 } @r;
    is(scalar @out, 0, 'ts: each record within the requests\' time')
        or diag join ' ', map { $_->{ts} } @out;
    sleep 1.1;
    my $t2 = time;
    $n->request('GET', '/api/v1/public/quotes') for 1 .. 6;
    my @later = grep { epoch($_->{ts}) >= int($t2) } records($j, 16);
    is(scalar @later, 6, 'ts: the 6 records a second later carry the later time')
        or diag join ' ', map { $_->{ts} } records($j);
    is($r0->{user_id}, 'alice', 'user_id from insite_gdpr_audit_user');
    is($r0->{path}, '/api/v1/portfolio/holdings/', 'query string dropped');
    is($r0->{data_type}, '/api/v1/portfolio', 'data_type: the location, not the client\'s path');
    is($r0->{status}, 200, 'status');
    ok($r0->{result}, 'result true below 400');
    is($r0->{ip}, '127.0.0.1', 'ip');
    like($r0->{worker}, qr/^[01]$/, 'worker number');
    is($r0->{request_id}, 'rid-1', 'request_id: $insite_request_id, the X-Request-ID the client sent');
    my ($pub) = grep { $_->{path} eq '/api/v1/public/quotes' } @r;
    like($pub && $pub->{request_id}, qr/^[0-9a-f]{32}$/, 'request_id without one sent: a new id');
    my %by = map { ("$_->{method} $_->{path}" => $_) } @r;
    is($by{'POST /api/v1/portfolio/holdings'}{access_type}, 'write', 'auto: POST write');
    is($by{'PUT /api/v1/portfolio/holdings'}{access_type}, 'write', 'auto: PUT write');
    is($by{'PATCH /api/v1/portfolio/holdings'}{access_type}, 'write', 'auto: PATCH write');
    is($by{'DELETE /api/v1/portfolio/holdings/42'}{access_type}, 'delete', 'auto: DELETE delete');
    is($by{'HEAD /api/v1/portfolio/holdings'}{access_type}, 'read', 'auto: HEAD read');
    is($by{'GET /api/v1/export'}{access_type}, 'export', 'insite_gdpr_access_type export');
    is($by{'GET /api/v1/export'}{data_type}, 'report-gdpr', 'insite_gdpr_data_type with variables');
    is($by{'GET /api/v1/search?q=tsla'}{status}, 404, 'insite_gdpr_audit_query on keeps the query');
    ok(!$by{'GET /api/v1/search?q=tsla'}{result}, 'result false at 404');
    is($by{'GET /api/v1/public/quotes'}{user_id}, undef, 'anonymous on: user_id null');
    ok(!exists $by{'GET /api/v1/portfolio/anon'}, 'no user, anonymous off: not recorded');
    ok(!exists $by{'GET /api/v1/default-user'}, 'empty user variable: not recorded');
    my ($odd) = grep { ($_->{user_id} // '') eq "bob\"\\" } @r;
    ok($odd, 'quotes and backslashes in the user survive JSON');
    is($odd->{path}, "/api/v1/portfolio/caf\x{e9}\x{fffd}", 'UTF-8 kept, an invalid byte becomes U+FFFD')
        if $odd;
    # every line is valid JSON with the fixed tail, and the hash is as documented
    my $ok = 1;
    for my $f (glob "$j/audit-*.jsonl") {
        my $prev = '0' x 64;
        for my $line (split /\n/, slurp($f)) {
            my ($body, $hash) = $line =~ /^(.*),"hash":"([0-9a-f]{64})"\}$/ or ($ok = 0, last);
            $ok &&= $body =~ /"prev_hash":"$prev"$/;
            $ok &&= sha256_hex($prev . $body) eq $hash;
            $prev = $hash;
        }
    }
    ok($ok, 'hash = SHA-256(prev_hash || line up to ,"hash") and chained');
    my ($rc, $out) = verify($j);
    is($rc, 0, 'insite-auditd verify: ok') or diag($out);
    $n->check_log;
    $n->stop;
}

# ------------------------------------------------- concurrent load, one-to-one
{
    my $j = "$tmp/load";
    my $n = nginx(http => "    insite_gdpr_journal $j;\n    insite_gdpr_fsync off;\n    insite_gdpr_rotate_size 64k;\n",
                  server => <<'CONF');
        location /data/ { insite_gdpr_audit on; insite_gdpr_audit_user $http_x_user;
                          insite_gdpr_data_type $arg_n; return 200 "ok\n"; }
CONF
    my ($clients, $each) = (8, 250);
    my @kids;
    for my $c (1 .. $clients) {
        my $pid = fork // die;
        if ($pid == 0) {
            my $bad = 0;
            for my $i (1 .. $each) {
                my $r = http_request($n->port, 'GET', "/data/item?n=$c-$i",
                                     headers => { 'X-User' => "u$c", Connection => ($i % 10 ? 'keep-alive' : 'close') });
                $bad++ unless ($r->{status} // 0) == 200;
            }
            POSIX::_exit($bad ? 1 : 0);
        }
        push @kids, $pid;
    }
    my $fails = 0;
    for (@kids) { waitpid($_, 0); $fails++ if $? }
    is($fails, 0, "$clients clients x $each requests: all 200");
    my @r = records($j, $clients * $each);
    is(scalar @r, $clients * $each, 'as many records as requests');
    my %seen;
    $seen{$_->{data_type}}++ for @r;
    my @want = map { my $c = $_; map { "$c-$_" } 1 .. $each } 1 .. $clients;
    is(scalar(grep { ($seen{$_} // 0) == 1 } @want), scalar @want, 'each request exactly once, by content');
    is(scalar(grep { $_->{user_id} ne 'u' . (split /-/, $_->{data_type})[0] } @r), 0, 'user matches request');
    my %workers = map { ($_->{worker} => 1) } @r;
    is(scalar keys %workers, 2, 'both workers wrote records');
    my @files = glob "$j/audit-*.jsonl";
    cmp_ok(scalar @files, '>', 4, 'rotated by size (' . scalar(@files) . ' files)');
    my ($rc, $out) = verify($j);
    is($rc, 0, 'chains verify across rotated files') or diag($out);

    # kill -9 a worker: the respawned one continues its chain
    my @w = $n->workers;
    my $before = scalar records($j);
    kill 'KILL', $w[0];
    ok(wait_for(30, sub { my @now = $n->workers; @now == 2 && !grep { $_ == $w[0] } @now }), 'worker respawned');
    $n->request('GET', "/data/item?n=after-$_", headers => { 'X-User' => 'k' }) for 1 .. 20;
    is(scalar records($j, $before + 20), $before + 20, 'records after the respawn');
    ($rc, $out) = verify($j);
    is($rc, 0, 'chains still verify: the new worker continued the chain') or diag($out);
    unlike($out, qr/chain \d+\.\d+/, 'no chain of its own after a crash');
    like($n->error_log, qr/chain "\d" continues at seq (\d+)/, 'log: continues at seq');

    # reload: new workers start their own chain, then take over "0"/"1"
    $n->reload;
    ok(wait_for(30, sub { $n->error_log =~ /chain "\d\.\d+" ends at seq \d+, chain "\d" continues/ }),
       'after reload the new workers continue chains 0 and 1');
    $n->request('GET', "/data/item?n=reload-$_", headers => { 'X-User' => 'k' }) for 1 .. 10;
    ($rc, $out) = verify($j);
    is($rc, 0, 'chains verify after reload') or diag($out);
    is(scalar(() = alerts($n)), 0, 'no alerts') or diag(join "\n", alerts($n));
    $n->stop;

    # tampering: an edited, a deleted and a reordered line
    my ($f) = grep { -s $_ > 2000 } sort glob "$j/audit-0-*.jsonl";
    my @lines = split /\n/, slurp($f);
    my $orig = join("\n", @lines) . "\n";
    (my $edited = $orig) =~ s/"user_id":"u(\d)"/"user_id":"x$1"/;
    Test::Nginx::Util::spew($f, $edited);
    ($rc, $out) = verify($f);
    is($rc, 1, 'edited record: verify fails');
    like($out, qr/:1: seq \d+: hash does not match the record/, 'edited record named by line');
    Test::Nginx::Util::spew($f, join("\n", @lines[0, 2 .. $#lines]) . "\n");
    ($rc, $out) = verify($f);
    like($out, qr/:2: seq \d+: prev_hash does not match the previous record/, 'deleted record found');
    Test::Nginx::Util::spew($f, join("\n", @lines[1, 0, 2 .. $#lines]) . "\n");
    ($rc, $out) = verify($f);
    is($rc, 1, 'reordered records: verify fails');
    Test::Nginx::Util::spew($f, $orig);
    ($rc, $out) = verify($f);
    is($rc, 0, 'restored file verifies') or diag($out);
}

# ------------------------------------------------------------- rotate_time
{
    my $j = "$tmp/rt";
    my $n = nginx(http => "    insite_gdpr_journal $j;\n    insite_gdpr_rotate_time 1s;\n    insite_gdpr_fsync always;\n",
                  server => "        location / { insite_gdpr_audit on; insite_gdpr_audit_anonymous on; return 200; }\n");
    $n->get('/a') for 1 .. 4;
    sleep 2.2;
    # which worker takes a request is the kernel's choice, so count per chain
    # and keep asking until the chain that served the first round serves again:
    # that chain must then have rotated into a second file
    my %files;
    for (1 .. 40) {
        $n->get('/b');
        %files = ();
        $files{$_}++ for map { m{/audit-([^-]+)-\d+\.jsonl$} ? $1 : () }
                         grep { -s $_ } glob "$j/audit-*.jsonl";
        last if grep { $_ >= 2 } values %files;
    }
    ok((grep { $_ >= 2 } values %files), 'rotate_time: a chain has a new file after 1s')
        or diag(explain(\%files));
    my ($rc, $out) = verify($j);
    is($rc, 0, 'chain continues across time rotation') or diag($out);
    like($n->get('/metrics')->{status} // '', qr/\d/, 'alive');
    $n->check_log;
    $n->stop;
}

# -------------------------------------------------------------- bad config
{
    my $conf = "$tmp/bad.conf";
    for my $case (["insite_gdpr_fsync sometimes;", qr/invalid value "sometimes"/],
                  ["insite_gdpr_rotate_size 1k;", qr/invalid value "1k".*at least 4k/],
                  ["insite_gdpr_rotate_size 0;", qr/invalid value "0"/],
                  ["insite_gdpr_rotate_size 17g;", qr/invalid value "17g".*at most 16g/],
                  ["insite_gdpr_rotate_time 0;", qr/invalid value "0".*"off"/],
                  ["insite_gdpr_rotate_time 31d;", qr/invalid value "31d"/],
                  ["insite_gdpr_rotate_time soon;", qr/invalid value "soon"/],
                  ["server { location / { insite_gdpr_access_type peek; } }", qr/invalid value "peek"/],
                  ["insite_gdpr_journal /a; insite_gdpr_journal /b;", qr/is duplicate/]) {
        Test::Nginx::Util::spew($conf, join('', map { "load_module $_;\n" } split ' ', $ENV{TEST_NGINX_LOAD_MODULES})
                                       . "events {}\nhttp { $case->[0] }\n");
        my ($out, $rc) = run_cmd(10, $ENV{TEST_NGINX_BINARY} || '/usr/sbin/nginx', '-t', '-p', "$tmp/", '-c', $conf);
        ok($rc && $out =~ $case->[1], "nginx -t refuses: $case->[0]") or diag($out);
    }
}

# ------------------------------------------- journal full / unwritable
SKIP: {
    my $mnt = "$tmp/full";
    mkdir $mnt;
    my ($out, $rc) = run_cmd(5, 'mount', '-t', 'tmpfs', '-o', 'size=256k', 'tmpfs', $mnt);
    skip "cannot mount a tmpfs to fill ($out)", 15 if $rc;
    my $unmount = sub { run_cmd(5, 'umount', '-l', $mnt) };
    for my $mode (qw(closed open)) {
        my $n = nginx(http => "    insite_gdpr_journal $mnt/j;\n", server => <<"CONF");
        location / { insite_gdpr_audit on; insite_gdpr_audit_anonymous on;
                     insite_gdpr_audit_fail $mode; root $tmp; rewrite ^ /ok.txt break; }
        location = /metrics { insite_metrics; }
CONF
        is($n->get('/before')->{status}, 200, "$mode: served while the journal is writable");
        run_cmd(10, 'dd', 'if=/dev/zero', "of=$mnt/filler", 'bs=4k');
        my %st;
        # the files' last pages still take a few records: until both workers fail
        for (1 .. 80) { $st{$n->get("/full")->{status} // 0}++ }
        for (1 .. 10) { $st{last}{$n->get("/full")->{status} // 0}++ }
        if ($mode eq 'closed') {
            is_deeply($st{last}, { 503 => 10 }, 'closed: refused with 503 once the journal failed');
            my $r = $n->get('/full');
            like($r->{body}, qr/"error":"audit_unavailable"/, 'closed: JSON error body');
            is($r->{headers}{'retry-after'}, 5, 'closed: Retry-After');
        } else {
            is($st{200} // 0, 80, 'open: still served');
        }
        my $m = $n->get('/metrics')->{body};
        my ($lost) = $m =~ /^insite_gdpr_records_failed_total (\d+)/m;
        cmp_ok($lost // 0, '>', 0, "$mode: lost records counted");
        like($m, qr/^insite_gdpr_journal_writable [01]$/m, "$mode: writable gauge drops");
        my @alert = grep { /insite gdpr: journal .* write failed: audit records are being lost \(disk full\)/ }
                    split /\n/, $n->error_log;
        ok(@alert >= 1 && @alert <= 2, "$mode: one alert per worker and state change (" . scalar(@alert) . ')');
        unlink "$mnt/filler";
        my $ok = wait_for(5, sub { $n->get('/again')->{status} == 200
                                   && $n->get('/again')->{status} == 200 });
        ok($ok, "$mode: writable again, served");
        if ($mode eq 'closed') {
            # the first refusal that could be written again reopened the gate
            my @r503 = grep { $_->{status} == 503 } records("$mnt/j");
            ok(@r503 && !grep({ ($_->{reason} // '') ne 'audit_unavailable' || $_->{result} } @r503),
               'closed: refusals journaled with "result":false,"reason":"audit_unavailable" (' . scalar(@r503) . ')');
        }
        # logged by the write() that succeeds, a few ms after the answer
        ok(wait_for(5, sub { $n->error_log =~ /is writable again/ }), "$mode: recovery logged");
        $n->stop;
        run_cmd(5, 'rm', '-rf', "$mnt/j");
    }
    $unmount->();
}

{
    # a journal directory that cannot be created: nginx does not start
    # (t/403 covers nginx -t and unprivileged workers)
    Test::Nginx::Util::spew("$tmp/file", "x");
    my $n = eval { nginx(http => "    insite_gdpr_journal $tmp/file/audit;\n", server => <<"CONF") };
        location /c { insite_gdpr_audit on; insite_gdpr_audit_anonymous on; insite_gdpr_audit_fail closed; root $tmp; rewrite ^ /ok.txt break; }
CONF
    ok(!$n, 'a journal directory that cannot be made: nginx does not start');
    like($@, qr/mkdir\(\) "\Q$tmp\E\/file\/audit" failed/, 'the reason is logged');
}

done_testing();
