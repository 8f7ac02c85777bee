# insite-auditd end to end: nginx (2 workers) journals audited requests
# under a concurrent load while the shipper is killed -9 and restarted, an
# nginx worker is killed -9 and PostgreSQL is stopped and started again:
# every completed request is in gdpr_audit_trail exactly once.  Then: chain
# incidents for a tampered journal, retention, signed checkpoints
# (verify-checkpoints), Kafka user_events, and the API.
#
# Needs INSITE_PG_DSN and INSITE_KAFKA_BOOTSTRAP (scripts/test.sh exports
# them); runs its own PostgreSQL cluster (scripts/services.sh pg in a
# private run dir) so that it can stop it.  INSITE_AUDITD_BIN picks the
# binary (e.g. build/asan/bin/insite-auditd).

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

use Insite::Nginx;
use Insite::Services qw(free_port wait_port http_request run_cmd);

for my $v (qw(TEST_NGINX_LOAD_MODULES INSITE_PG_DSN INSITE_KAFKA_BOOTSTRAP)) {
    plan skip_all => "$v not set (run under scripts/test.sh or source build/run/services.env)"
        unless $v eq 'TEST_NGINX_LOAD_MODULES' ? defined $ENV{$v} : $ENV{$v};   # empty: a static nginx
}
my $root = getcwd();
my $bin = $ENV{INSITE_AUDITD_BIN} // "$root/build/bin/insite-auditd";
$bin = "$root/$bin" unless $bin =~ m{^/};
plan skip_all => "$bin not built" unless -x $bin;

my $json = JSON::PP->new->utf8->canonical;
my $tmp = File::Temp::tempdir('insite-auditd-XXXXXX', TMPDIR => 1, CLEANUP => 1);
chmod 0755, $tmp;
my $tag = "g$$";

sub slurp { local (@ARGV, $/) = @_; my $d = <>; $d // '' }
sub wait_for {
    my ($secs, $cond) = @_;
    my $deadline = time + $secs;
    while (time < $deadline) { return 1 if $cond->(); sleep 0.1 }
    return $cond->();
}

# ---- our own PostgreSQL, to stop and start
$ENV{INSITE_RUN_DIR} = "$tmp/run";
mkdir "$tmp/run";
my ($out, $rc) = run_cmd(120, "$root/scripts/services.sh", 'start', 'pg');
BAIL_OUT("own PostgreSQL did not start:\n$out") if $rc;
END { local $?; $ENV{INSITE_RUN_DIR} = "$tmp/run"; run_cmd(60, "$root/scripts/services.sh", 'stop', 'pg') }
my %pgenv = slurp("$tmp/run/pg.env") =~ /^(\w+)=(.*)$/mg;
my $dsn = $pgenv{INSITE_PG_DSN};
my ($pgbin) = sort { $b cmp $a } glob '/usr/lib/postgresql/*/bin';
sub pg_ctl { run_cmd(60, 'runuser', '-u', 'postgres', '--', "$pgbin/pg_ctl", '-D', "$tmp/run/pg/data",
                     '-l', "$tmp/run/pg/postgres.log", '-s', '-w', @_) }
sub psql {
    my ($o, $r) = run_cmd(20, 'psql', $dsn, '-X', '-qtA', '-v', 'ON_ERROR_STOP=1', '-c', $_[0]);
    die "psql: $o" if $r;
    chomp $o;
    $o;
}

# ---- nginx
my $j = "$tmp/journal";
Test::Nginx::Util::spew("$tmp/ok.txt", "ok\n");
my $nginx = Insite::Nginx->new(http => <<"CONF", server => <<"CONF2");
    insite_gdpr_journal $j;
    insite_gdpr_rotate_size 32k;
CONF
        location /data/ { insite_gdpr_audit on; insite_gdpr_audit_user \$http_x_user;
                          insite_gdpr_data_type "$tag-\$arg_n"; root $tmp; rewrite ^ /ok.txt break; }
CONF2

# ---- the shipper
openssl_key();
sub openssl_key {
    run_cmd(10, 'openssl', 'genpkey', '-algorithm', 'ed25519', '-out', "$tmp/sign.pem");
    run_cmd(10, 'openssl', 'pkey', '-in', "$tmp/sign.pem", '-pubout', '-out', "$tmp/sign.pub");
}
my $api = free_port();
my %env = (
    INSITE_PG_DSN => $dsn, INSITE_PG_MIGRATIONS_DIR => "$root/workers/migrations",
    INSITE_AUDITD_JOURNAL_DIR => $j, INSITE_AUDITD_SOURCE => 'edge-test',
    INSITE_AUDITD_HTTP_PORT => $api, INSITE_AUDITD_POLL_INTERVAL => '50ms',
    INSITE_AUDITD_BATCH_SIZE => 500, INSITE_AUDITD_RETENTION => '0',
    INSITE_AUDITD_SIGNING_KEY => "$tmp/sign.pem", INSITE_AUDITD_DIGEST_DIR => "$tmp/digests",
    INSITE_AUDITD_CHECKPOINT_INTERVAL => '1s',
    INSITE_AUDITD_KAFKA => 'true', INSITE_KAFKA_BOOTSTRAP => $ENV{INSITE_KAFKA_BOOTSTRAP},
    INSITE_KAFKA_LINGER => '5ms', INSITE_KAFKA_SPOOL_DIR => "$tmp/spool",
);
my $log = "$tmp/auditd.log";
my $pid;
sub start {
    $pid = Insite::Services::spawn($bin, \%env, $log);
    ok(wait_port($api, 15), "insite-auditd API listens (pid $pid)") or diag(slurp($log));
}
END { kill 'KILL', $pid if $pid }
start();

# ---- load, with crashes and an outage in the middle
my ($clients, $each) = (4, 600);
pipe(my $rd, my $wr) or die;
my @kids;
for my $c (1 .. $clients) {
    my $k = fork // die;
    if ($k == 0) {
        close $rd;
        my @done;
        for my $i (1 .. $each) {
            my $r = http_request($nginx->port, 'GET', "/data/portfolio?n=$c-$i",
                                 headers => { 'X-User' => "user$c" }, timeout => 5);
            push @done, "$c-$i" if ($r->{status} // 0) == 200 && ($r->{body} // '') eq "ok\n";
            sleep 0.002;
        }
        syswrite $wr, join(' ', @done) . "\n";
        POSIX::_exit(0);
    }
    push @kids, $k;
}
close $wr;
sleep 0.5;
kill 'KILL', $pid;                         # the shipper, mid-batch
waitpid($pid, 0);
pass('shipper killed -9');
sleep 0.3;
start();
sleep 0.3;
my ($w) = $nginx->workers;
kill 'KILL', $w;                           # an nginx worker
pass("nginx worker $w killed -9");
sleep 0.3;
(my $o, $rc) = pg_ctl('-m', 'immediate', 'stop');
is($rc, 0, 'PostgreSQL stopped') or diag($o);
sleep 1.5;
($o, $rc) = pg_ctl('start');
is($rc, 0, 'PostgreSQL started again') or diag($o);
my %done;
$done{$_} = 1 for map { split ' ' } <$rd>;
waitpid($_, 0) for @kids;
cmp_ok(scalar keys %done, '>', $clients * $each * 0.9, scalar(keys %done) . ' requests completed');

sub journal_lines { my $n = 0; $n += () = slurp($_) =~ /\n/g for glob "$j/audit-*.jsonl"; $n }
my $rows = sub { psql("SELECT count(*) FROM gdpr_audit_trail WHERE data_type LIKE '$tag-%'") };
ok(wait_for(30, sub {
    my $n = eval { $rows->() } // -1;
    $n >= scalar(keys %done);
}), 'rows caught up') or diag($rows->());
sleep 1;                                   # a last pass
my %in = map { split /\|/ } split /\n/,
    psql("SELECT substr(data_type, length('$tag-') + 1), count(*) FROM gdpr_audit_trail"
         . " WHERE data_type LIKE '$tag-%' GROUP BY 1");
my @missing = grep { !$in{$_} } keys %done;
my @dup = grep { $in{$_} > 1 } keys %in;
is(scalar @missing, 0, 'every completed request is in gdpr_audit_trail') or diag("missing: @missing[0 .. 9]");
is(scalar @dup, 0, 'no record twice') or diag("dup: @dup[0 .. 9]");
my @extra = grep { !$done{$_} } keys %in;
cmp_ok(scalar @extra, '<=', 20, scalar(@extra) . ' extra rows (requests cut by the worker kill, journaled)');
is(psql("SELECT count(*) FROM security_incidents WHERE source = 'edge-test'"), 0, 'no chain incidents');
like(slurp($log), qr/postgresql: connection lost|postgresql: .*retrying/, 'shipper saw the outage');
is(psql("SELECT count(*) FROM gdpr_audit_trail WHERE user_id = 'user1' AND access_type = 'read'"
        . " AND path = '/data/portfolio' AND status = 200 AND result AND worker ~ '^[01]'"),
   $in{'1-1'} ? scalar(grep { /^1-/ } keys %in) : -1, 'row content');

# retention 0: shipped files deleted, the current ones stay
my @left = glob "$j/audit-*.jsonl";
cmp_ok(scalar @left, '<=', 8, 'shipped journal files deleted (' . scalar(@left) . ' left)');
like(slurp($log), qr/retention: deleted shipped journal/, 'retention logged');

# ---- signed checkpoints
ok(wait_for(5, sub { psql("SELECT count(*) FROM gdpr_audit_checkpoints") >= 3 }), 'checkpoints made');
($o, $rc) = run_cmd(10, $bin, 'verify-checkpoints', "$tmp/digests/checkpoints-edge-test.jsonl", "$tmp/sign.pub");
is($rc, 0, 'verify-checkpoints: ok') or diag($o);
my $last = $json->decode(psql("SELECT payload FROM gdpr_audit_checkpoints ORDER BY id DESC LIMIT 1"));
ok(@{ $last->{heads} } >= 2 && $last->{previous}{id} == $last->{id} - 1, 'checkpoint names heads and its predecessor');
my @cps = split /\n/, slurp("$tmp/digests/checkpoints-edge-test.jsonl");
Test::Nginx::Util::spew("$tmp/cut.jsonl", join("\n", @cps[0, 2 .. $#cps]) . "\n");
($o, $rc) = run_cmd(10, $bin, 'verify-checkpoints', "$tmp/cut.jsonl", "$tmp/sign.pub");
like($o, qr/does not name the previous checkpoint/, 'a removed checkpoint is detected');
(my $forged = $cps[0]) =~ s/"seq\\":(\d+)/'"seq\\":' . ($1 + 1)/e;
Test::Nginx::Util::spew("$tmp/forged.jsonl", "$forged\n");
($o, $rc) = run_cmd(10, $bin, 'verify-checkpoints', "$tmp/forged.jsonl", "$tmp/sign.pub");
like($o, qr/signature does not verify/, 'an edited checkpoint is detected');

# ---- tampering: a chain with a forged record -> security_incidents
{
    my $prev = '0' x 64;
    my @l;
    for my $s (1 .. 3) {
        my $body = sprintf('{"id":"%s","ts":"2026-01-01T00:00:0%d.000Z","user_id":"eve","access_type":"read",'
                           . '"data_type":"%s-forged","method":"GET","path":"/x","status":200,"result":true,'
                           . '"ip":"127.0.0.1","request_id":null,"worker":"7","seq":%d,"prev_hash":"%s"',
                           sprintf('00000000-0000-4000-8000-%012d', $$ * 10 + $s), $s, $tag, $s, $prev);
        my $h = sha256_hex($prev . $body);
        push @l, "$body,\"hash\":\"$h\"}";
        $prev = $h;
    }
    $l[1] =~ s/"user_id":"eve"/"user_id":"bob"/;      # edited after the fact
    Test::Nginx::Util::spew("$j/audit-7-00000000000000000001.jsonl", join("\n", @l) . "\n");
    ok(wait_for(10, sub { psql("SELECT count(*) FROM security_incidents WHERE chain = '7'") == 1 }),
       'the edited record is a security incident');
    is(psql("SELECT kind || ' ' || seq FROM security_incidents WHERE chain = '7'"), 'hash_mismatch 2', 'kind and seq');
    is(psql("SELECT count(*) FROM gdpr_audit_trail WHERE data_type = '$tag-forged'"), 3,
       'records are still shipped (evidence)');
    like(slurp($log), qr/audit chain 7: .*hash_mismatch/, 'incident logged');
}

# ---- Kafka user_events
{
    my ($k) = run_cmd(30, 'kcat', '-C', '-b', $ENV{INSITE_KAFKA_BOOTSTRAP}, '-t', 'user_events', '-o', 'beginning', '-e', '-q');
    my %ids;
    for (split /\n/, $k) {
        my $e = eval { $json->decode($_) } or next;
        next unless ($e->{data}{data_type} // '') =~ /^\Q$tag\E-/;
        $ids{$e->{event_id}}++;
        $ids{bad}++ unless $e->{event_type} eq 'data_access' && $e->{event_id} eq $e->{data}{id};
    }
    my $n = psql("SELECT count(*) FROM gdpr_audit_trail WHERE data_type LIKE '$tag-%'");
    is(scalar(grep { $_ ne 'bad' } keys %ids), $n, 'every row produced to user_events (event_id = record id)');
    ok(!$ids{bad}, 'envelope: event_type data_access');
}

# ---- API
{
    # an operator (t/405 covers who may read what)
    my $op = { 'X-User-Id' => 'ops', 'X-User-Scopes' => 'gdpr:admin' };
    my $get = sub { my $r = http_request($api, 'GET', $_[0], headers => $op);
                    ($r->{status}, eval { $json->decode($r->{body}) } // {}) };
    my ($st, $b) = $get->('/api/v1/gdpr/audit-trail?user_id=user2&limit=5');
    is($st, 200, 'audit-trail: 200');
    is($b->{count}, 5, 'limit');
    my @ts = map { $_->{ts} } @{ $b->{records} };
    is_deeply(\@ts, [reverse sort @ts], 'newest first');
    is(scalar(grep { $_->{user_id} ne 'user2' } @{ $b->{records} }), 0, 'only that user');
    ($st, $b) = $get->('/api/v1/gdpr/audit-trail?user_id=user2&start_date=2000-01-01&end_date=2000-01-02');
    is($b->{count}, 0, 'date range');
    ($st, $b) = $get->('/api/v1/gdpr/audit-trail?limit=0');
    is($st, 400, 'bad limit: 400');
    ($st, $b) = $get->('/api/v1/gdpr/suspicious-activity?user_id=user3');
    is($st, 200, 'suspicious-activity: 200');
    is($b->{users}[0]{level}, 'HIGH', '> 100 accesses in an hour: HIGH');
    ($st, $b) = $get->('/api/v1/gdpr/suspicious-activity');
    cmp_ok(scalar(grep { $_->{level} eq 'HIGH' } @{ $b->{users} }), '>=', 4, 'all heavy users listed');
    ($st, $b) = $get->('/api/v1/gdpr/suspicious-activity?user_id=eve');
    ok(!$b->{users}[0]{suspicious}, '3 accesses (at 2026-01-01): not suspicious');
}

my @bad = grep { /\[(alert|emerg|crit)\]/ && !/exited on signal 9/ } split /\n/, $nginx->error_log;
is(scalar @bad, 0, 'nginx: no alerts besides the killed worker') or diag(join "\n", @bad);
unlike(slurp($log), qr/AddressSanitizer|runtime error:|LeakSanitizer/, 'no sanitizer reports');
kill 'TERM', $pid;
waitpid($pid, 0);
is($? >> 8, 0, 'shipper exits cleanly on SIGTERM');
$nginx->stop;
done_testing();
