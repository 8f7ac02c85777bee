# Erasure reaches the audit journal files, shipped ones included, without
# breaking a chain: nginx journals the keyed pseudonym of the user
# (insite_gdpr_pseudonym_key), never the clear id, so after the user's
# erasure (through nginx, with the shipped data map) no journal file and no
# row of the database holds the clear id; `insite-auditd verify` passes on
# every journal file and `verify-checkpoints` on every signed checkpoint.
# Before the erasure the user reads their own (pseudonymous) trail through
# insite-auditd (auditd.pseudonym_key) and their export holds it; another
# user's is refused.  The erasure also deletes the idempotency keys of the
# user's alert channel (insite:{alert:<user>}:idem:*), not another user's.
#
# Needs INSITE_PG_DSN and INSITE_KAFKA_BOOTSTRAP (scripts/test.sh).
use strict;
use warnings;
use lib 't/lib';

use Cwd qw(getcwd);
use Digest::SHA qw(hmac_sha256_hex);
use File::Temp ();
use JSON::PP ();
use Test::More;
use Time::HiRes qw(time sleep);

use Insite::Gdpr qw(slurp spew wait_for token);
use Insite::Nginx;
use Insite::Services qw(free_port wait_port http_request run_cmd start_redis);

for my $v (qw(TEST_NGINX_LOAD_MODULES INSITE_PG_DSN INSITE_KAFKA_BOOTSTRAP)) {
    plan skip_all => "$v not set (run under scripts/test.sh)" unless $ENV{$v};
}
my $root = getcwd();
my ($gdpr, $auditd) = map { "$root/build/bin/insite-$_" } qw(gdpr auditd);
plan skip_all => 'workers not built' unless -x $gdpr && -x $auditd;

my $json = JSON::PP->new->utf8->canonical;
my $tmp = File::Temp::tempdir('insite-erasure-journal-XXXXXX', TMPDIR => 1, CLEANUP => 1);
chmod 0755, $tmp;
mkdir "$tmp/www";
spew("$tmp/www/p.json", "{\"holdings\":[]}\n");
my $dsn = $ENV{INSITE_PG_DSN};
my $tag = "ej$$" . int(time);
my ($A, $B) = ("$tag-alice", "$tag-bob");
sub psql { Insite::Gdpr::psql($dsn, $_[0]) }
sub journal_text { join '', map { slurp($_) } glob "$tmp/journal/audit-*.jsonl" }

my $key = "0123456789abcdef0123456789abcdef\n";
spew("$tmp/psn.key", $key);
my $psnA = 'psn:' . substr(hmac_sha256_hex($A, $key), 0, 32);
run_cmd(10, 'openssl', 'genpkey', '-algorithm', 'ed25519', '-out', "$tmp/sign.pem");
run_cmd(10, 'openssl', 'pkey', '-in', "$tmp/sign.pem", '-pubout', '-out', "$tmp/sign.pub");
# the shipped data map, our database only (no backend database here)
my $map = $json->decode(slurp("$root/workers/gdpr/datamap.json"));
$map->{postgresql} = [ grep { $_->{database} ne 'backend' } @{ $map->{postgresql} } ];
$map->{retention} = [ grep { $_->{database} ne 'backend' } @{ $map->{retention} || [] } ];
delete $map->{databases}{backend};
spew("$tmp/map.json", $json->encode($map));

my $redis = start_redis();
my ($gport, $aport) = (free_port(), free_port());
my $gpid = Insite::Services::spawn($gdpr, {
    INSITE_PG_DSN => $dsn, INSITE_PG_MIGRATIONS_DIR => "$root/workers/migrations",
    INSITE_REDIS_PORT => $redis->port, INSITE_GDPR_HTTP_PORT => $gport, INSITE_GDPR_SYNC_INTERVAL => '100ms',
    INSITE_GDPR_DATA_MAP => "$tmp/map.json", INSITE_GDPR_PSEUDONYM_KEY => "$tmp/psn.key",
    INSITE_GDPR_SIGNING_KEY => "$tmp/sign.pem", INSITE_KAFKA_BOOTSTRAP => $ENV{INSITE_KAFKA_BOOTSTRAP},
    INSITE_KAFKA_LINGER => '5ms', INSITE_KAFKA_SPOOL_DIR => "$tmp/spool" }, "$tmp/gdpr.log");
END { kill 'TERM', $gpid if $gpid }
ok(wait_port($gport, 20), 'insite-gdpr listens') or diag(slurp("$tmp/gdpr.log"));
my $apid = Insite::Services::spawn($auditd, {
    INSITE_PG_DSN => $dsn, INSITE_PG_MIGRATIONS_DIR => "$root/workers/migrations",
    INSITE_AUDITD_JOURNAL_DIR => "$tmp/journal", INSITE_AUDITD_SOURCE => "edge-$tag",
    INSITE_AUDITD_HTTP_PORT => $aport, INSITE_AUDITD_POLL_INTERVAL => '50ms',
    INSITE_AUDITD_KEEP_SHIPPED => 'true', INSITE_AUDITD_SIGNING_KEY => "$tmp/sign.pem",
    INSITE_AUDITD_CHECKPOINT_INTERVAL => '1s', INSITE_AUDITD_DIGEST_DIR => "$tmp/digests",
    INSITE_AUDITD_PSEUDONYM_KEY => "$tmp/psn.key" }, "$tmp/auditd.log");
END { kill 'TERM', $apid if $apid }
ok(wait_port($aport, 20), 'insite-auditd listens') or diag(slurp("$tmp/auditd.log"));

# a key nginx cannot use is a configuration error, not clear ids
spew("$tmp/short.key", "too-short\n");
for my $bad (["$tmp/short.key", qr/insite_gdpr_pseudonym_key "\Q$tmp\E\/short.key": at least 16 bytes of secret/],
             ["$tmp/none.key", qr/insite_gdpr_pseudonym_key "\Q$tmp\E\/none.key" cannot be read/]) {
    my $bn = eval { Insite::Nginx->new(http => "    insite_gdpr_journal $tmp/bj;\n    insite_gdpr_pseudonym_key $bad->[0];\n",
                                       server => "        location / { insite_gdpr_audit on; }\n") };
    ok(!$bn, "nginx refuses $bad->[0]");
    like($@, $bad->[1], '... and says why');
}

mkdir "$tmp/journal";
my $n = Insite::Nginx->new(http => <<"HTTP", server => <<"CONF");
    insite_gdpr_journal $tmp/journal;
    insite_gdpr_fsync off;
    insite_gdpr_rotate_size 4k;
    insite_gdpr_pseudonym_key $tmp/psn.key;
HTTP
        insite_gateway_jwt_secret "ej-secret";
        location /api/v1/portfolio { insite_gateway_jwt on; insite_gdpr_audit on;
                                     insite_gdpr_data_type portfolio; alias $tmp/www/p.json; }
        location ~ ^/api/v1/gdpr/(consents|delete|deletion-status|export)(/|\$) {
            insite_gateway_jwt on; insite_gdpr_audit on; insite_gdpr_data_type data_subject_rights;
            proxy_set_header X-User-Id \$insite_user_id;
            proxy_pass http://127.0.0.1:$gport;
        }
CONF
my %tok = map { $_ => token('ej-secret', $_) } $A, $B;
sub call {
    my ($who, $method, $path, $body) = @_;
    my $r = $n->request($method, $path, headers => { Authorization => "Bearer $tok{$who}",
                        defined $body ? ('Content-Type' => 'application/json') : () },
                        defined $body ? (body => $body) : (), timeout => 10);
    $r->{json} = eval { $json->decode($r->{body}) } // {};
    return $r;
}

# ---- activity: audited reads, a consent, alert channel idempotency keys
for my $i (1 .. 40) { call($i % 4 ? $A : $B, 'GET', '/api/v1/portfolio') }
is(call($A, 'POST', '/api/v1/gdpr/consents', '{"consent_type":"analytics","granted":true}')->{status}, 200,
   'a consent through nginx');
$redis->cli('SET', "insite:{alert:$A}:idem:order-$_", $_, 'EX', 3600) for 1 .. 3;
$redis->cli('SET', "insite:{alert:$B}:idem:order-1", 1, 'EX', 3600);
# 41 audited answers; a record reaches the file a few ms after its answer
ok(wait_for(5, sub { (() = journal_text() =~ /\n/g) >= 41 }), 'the 41 records are in the journal');
my @files = glob "$tmp/journal/audit-*.jsonl";
cmp_ok(scalar @files, '>', 2, 'the journal rotated: ' . scalar(@files) . ' files');
my $text = journal_text();
unlike($text, qr/\Q$A\E/, 'the journal never holds the clear id');
like($text, qr/"user_id":"\Q$psnA\E","data_subject":"\Q$psnA\E"/, 'it holds the keyed pseudonym (same HMAC as the workers)');
my $lines = () = $text =~ /\n/g;
ok(wait_for(20, sub { psql("SELECT count(*) FROM gdpr_audit_trail WHERE source = 'edge-$tag'") == $lines }),
   "all $lines records shipped") or diag(slurp("$tmp/auditd.log"));

# ---- the user's own trail, found by pseudonym; nobody else's
my $t = http_request($aport, 'GET', '/api/v1/gdpr/audit-trail?limit=1000', headers => { 'X-User-Id' => $A });
my $trail = eval { $json->decode($t->{body}) } // {};
is(scalar(grep { $_->{user_id} eq $psnA } @{ $trail->{records} // [] }), 31, 'alice reads her 31 records')
    or diag($t->{body});
is(http_request($aport, 'GET', "/api/v1/gdpr/audit-trail?user_id=$B", headers => { 'X-User-Id' => $A })->{status},
   403, "another user's trail: 403");
my $e = call($A, 'POST', '/api/v1/gdpr/export');
is($e->{status}, 202, 'export requested');
my $arch;
ok(wait_for(20, sub { my $x = call($A, 'GET', "/api/v1/gdpr/export/$e->{json}{request_id}");
                      $arch = $x->{json} if ($x->{json}{schema} // '') eq 'insite-gdpr-export/1'; $arch }),
   'export ready');
cmp_ok(scalar(grep { $_->{user_id} eq $psnA } @{ $arch->{postgresql}{audit_trail} // [] }), '>=', 31,
   'the export holds her pseudonymous audit trail (and the export requests since)');

# ---- erasure through nginx
my $d = call($A, 'POST', '/api/v1/gdpr/delete', '{"confirmation":"DELETE_MY_DATA"}');
is($d->{status}, 202, 'erasure requested');
my $st;
ok(wait_for(60, sub { $st = call($A, 'GET', "/api/v1/gdpr/deletion-status/$d->{json}{request_id}")->{json};
                      ($st->{status} // '') eq 'completed' }), 'erasure completed') or diag(explain $st);
my %tg = map { $_->{target} => $_ } @{ $st->{targets} // [] };
is($tg{'redis:alert_idempotency'}{rows}, 3, 'the data map erased 3 alert idempotency keys');
is($redis->cli('KEYS', "insite:{alert:$A}:idem:*"), '', "alice's idempotency keys are gone");
is($redis->cli('EXISTS', "insite:{alert:$B}:idem:order-1"), '1', "bob's stays");

# the requests above were journaled too; wait until they are shipped
$text = journal_text();
$lines = () = $text =~ /\n/g;
ok(wait_for(20, sub { psql("SELECT count(*) FROM gdpr_audit_trail WHERE source = 'edge-$tag'") == $lines }),
   'everything shipped');
@files = glob "$tmp/journal/audit-*.jsonl";
is(scalar(grep { index(slurp($_), $A) >= 0 } @files), 0, 'no journal file holds the clear id (' . scalar(@files) . ' files)');
my ($dump, $drc) = run_cmd(60, 'pg_dump', '--data-only', $dsn);
is($drc, 0, 'pg_dump of the database');
ok(length($dump) > 1000 && index($dump, $psnA) >= 0, 'the dump holds the shipped trail (pseudonymous)');
is(index($dump, $A), -1, 'no row of the database holds the clear id');

# ---- chains and checkpoints still verify
my ($vo, $vs) = run_cmd(60, $auditd, 'verify', "$tmp/journal");
is($vs, 0, 'insite-auditd verify passes on every journal file') or diag($vo);
my $cps = psql("SELECT count(*) FROM gdpr_audit_checkpoints WHERE source = 'edge-$tag'");
ok(wait_for(20, sub { psql("SELECT count(*) FROM gdpr_audit_checkpoints WHERE source = 'edge-$tag'") > $cps }),
   'a checkpoint after the erasure');
my ($co, $cs) = run_cmd(60, $auditd, 'verify-checkpoints', "$tmp/digests/checkpoints-edge-$tag.jsonl", "$tmp/sign.pub");
is($cs, 0, 'verify-checkpoints passes on every checkpoint') or diag($co);
$n->check_log;
done_testing();
