# Journal record format 2: a refusal by consent is journaled with
# "result":false and "reason":"consent_required" (503 consent_unavailable
# when Redis cannot answer and the location fails closed); a served request
# has "reason":null.  insite-auditd ships the reason into
# gdpr_audit_trail.reason (migration 053) and serves it in the audit trail;
# a format-1 record (no "v", no "reason", as older nginx wrote) in the same
# directory still verifies and ships with reason NULL, and `insite-auditd
# verify` passes on both.
#
# Needs INSITE_PG_DSN (scripts/test.sh exports it).  INSITE_AUDITD_BIN picks
# the binary.
use strict;
use warnings;
use lib 't/lib';

use Cwd qw(getcwd);
use Digest::SHA qw(sha256_hex);
use File::Temp ();
use JSON::PP ();
use Test::More;
use Time::HiRes qw(time sleep);

use Insite::Gdpr qw(slurp spew wait_for journal_records token);
use Insite::Nginx;
use Insite::Services qw(free_port wait_port run_cmd start_redis http_request);

for my $v (qw(TEST_NGINX_LOAD_MODULES INSITE_PG_DSN)) {
    plan skip_all => "$v not set (run under scripts/test.sh)" unless $ENV{$v};
}
my $root = getcwd();
my $bin = $ENV{INSITE_AUDITD_BIN} // "$root/build/bin/insite-auditd";
$bin = "$root/$bin" unless $bin =~ m{^/};
plan skip_all => "$bin not built" unless -x $bin;

my $json = JSON::PP->new->utf8->canonical;
my $tmp = File::Temp::tempdir('insite-reason-XXXXXX', TMPDIR => 1, CLEANUP => 1);
chmod 0755, $tmp;
mkdir "$tmp/www";
spew("$tmp/www/ok.txt", "ok\n");
my $tag = "rsn$$-" . int(time);
my $dsn = $ENV{INSITE_PG_DSN};

sub psql { Insite::Gdpr::psql($dsn, $_[0]) }

my $redis = start_redis();
my $j = "$tmp/journal";
my $alice = "$tag-alice";
my $server = <<"CONF";
        insite_gateway_jwt_secret "reason-secret";
        location /gated/ { insite_gateway_jwt on; insite_gdpr_consent analytics;
                           insite_gdpr_audit on; insite_gdpr_data_type analytics;
                           alias $tmp/www/; }
CONF
my $ng = Insite::Nginx->new(http => "    insite_gdpr_journal $j;\n    insite_gdpr_fsync off;\n"
        . "    insite_redis 127.0.0.1:${\ $redis->port } connect_timeout=300ms command_timeout=300ms;\n",
    server => $server);
# a second nginx whose Redis is gone: fail closed -> 503 consent_unavailable
my $dead = free_port();
my $j2 = "$tmp/journal2";
my $ng2 = Insite::Nginx->new(http => "    insite_gdpr_journal $j2;\n    insite_gdpr_fsync off;\n"
        . "    insite_redis 127.0.0.1:$dead connect_timeout=300ms command_timeout=300ms;\n",
    server => $server);

my $tok = token('reason-secret', $alice);
sub get { my ($n) = @_; $n->get('/gated/ok.txt', headers => { Authorization => "Bearer $tok" }, timeout => 5) }

# (a worker answers 503 consent_unavailable until its Redis connection is up)
my $r;
ok(wait_for(10, sub { ($r = get($ng))->{status} != 503 }), 'nginx reaches Redis');
is($r->{status}, 403, 'no consent: 403');
is((eval { $json->decode($r->{body}) } // {})->{error}, 'consent_required', 'consent_required on the wire');
$redis->cli('HSET', "insite:consent:{$alice}", 'analytics', '1');
$redis->cli('PUBLISH', 'insite:consent:changed', $alice);
ok(wait_for(5, sub { get($ng)->{status} == 200 }), 'granted: 200');
is(get($ng2)->{status}, 503, 'Redis unreachable, fail closed: 503');

my (@recs, @recs2);
ok(wait_for(10, sub { @recs = journal_records($j); @recs2 = journal_records($j2);
                      (grep { $_->{status} == 200 } @recs) && @recs2 }), 'records journaled');
my $total = @recs;
@recs = grep { $_->{status} != 503 } @recs;   # the wait above
my ($deny) = grep { $_->{status} == 403 } @recs;
my ($ok) = grep { $_->{status} == 200 } @recs;
my ($down) = grep { $_->{status} == 503 } @recs2;
is($deny->{v}, 2, 'format 2');
ok(JSON::PP::is_bool($deny->{result}) && !$deny->{result}, 'refusal: result false');
is($deny->{reason}, 'consent_required', 'refusal: reason consent_required');
is($deny->{data_type}, 'analytics', 'data_type stays the resource');
is($ok->{reason}, undef, 'served: reason null');
ok(exists $ok->{reason} && $ok->{result}, 'served: result true, reason present as null');
is($down && $down->{reason}, 'consent_unavailable', 'fail closed: reason consent_unavailable');
# the exact layout: "reason" right after "result"
my ($line) = grep { /"status":403/ } split /\n/, join '', map { slurp($_) } glob "$j/audit-*.jsonl";
like($line, qr/^\{"v":2,"id":"[0-9a-f-]{36}",.*"status":403,"result":false,"reason":"consent_required","ip":/,
     'layout: {"v":2,"id":..., "result":false,"reason":"consent_required","ip":...');

# a format-1 chain, as an older nginx wrote it, next to the new ones
my $prev = '0' x 64;
my $old = '';
for my $seq (1 .. 2) {
    my $body = sprintf('{"id":"0b8f8e4e-1c7a-4f5e-9d1e-%012d","ts":"2026-01-01T00:00:0%d.000Z","user_id":"%s",'
                     . '"data_subject":"%s","access_type":"read","data_type":"v1","method":"GET","path":"/old",'
                     . '"status":403,"result":false,"ip":"127.0.0.1","request_id":null,"worker":"9",'
                     . '"seq":%d,"prev_hash":"%s"', $$ * 10 + $seq, $seq, $alice, $alice, $seq, $prev);
    my $h = sha256_hex($prev . $body);
    $old .= "$body,\"hash\":\"$h\"}\n";
    $prev = $h;
}
spew("$j/audit-9-00000000000000000001.jsonl", $old);
my ($vo, $vs) = run_cmd(30, $bin, 'verify', $j);
is($vs, 0, 'insite-auditd verify: format-1 and format-2 chains pass') or diag($vo);

# ship them
my $api = free_port();
my %env = (
    INSITE_PG_DSN => $dsn, INSITE_PG_MIGRATIONS_DIR => "$root/workers/migrations",
    INSITE_AUDITD_JOURNAL_DIR => $j, INSITE_AUDITD_SOURCE => "edge-$tag",
    INSITE_AUDITD_HTTP_PORT => $api, INSITE_AUDITD_POLL_INTERVAL => '50ms',
    INSITE_AUDITD_DIGEST_DIR => "$tmp/digests", INSITE_AUDITD_KEEP_SHIPPED => 'true',
);
my $pid = Insite::Services::spawn($bin, \%env, "$tmp/auditd.log");
END { kill 'TERM', $pid if $pid }
ok(wait_port($api, 20), 'insite-auditd listens') or diag(slurp("$tmp/auditd.log"));
my $n;
ok(wait_for(20, sub { ($n = psql("SELECT count(*) FROM gdpr_audit_trail WHERE source = 'edge-$tag'")) == $total + 2 }),
   "shipped ($n rows)") or diag(slurp("$tmp/auditd.log"));
is(psql("SELECT count(*) FROM gdpr_audit_trail WHERE source = 'edge-$tag' AND status = 403 AND reason = 'consent_required'"),
   1, 'gdpr_audit_trail.reason: consent_required for the refusal');
is(psql("SELECT count(*) FROM gdpr_audit_trail WHERE source = 'edge-$tag' AND status = 200 AND reason IS NULL"),
   scalar(grep { $_->{status} == 200 } @recs), 'reason NULL for served requests');
is(psql("SELECT count(*) FROM gdpr_audit_trail WHERE source = 'edge-$tag' AND data_type = 'v1' AND reason IS NULL"),
   2, 'format-1 records ship with reason NULL');
is(psql("SELECT count(*) FROM security_incidents WHERE source = 'edge-$tag'"), 0, 'no incident');

# the API serves the reason
my $t = http_request($api, 'GET', "/api/v1/gdpr/audit-trail", headers => { 'X-User-Id' => $alice }, timeout => 10);
my $trail = eval { $json->decode($t->{body}) } // {};
ok((grep { ($_->{reason} // '') eq 'consent_required' && $_->{status} == 403 } @{ $trail->{records} // [] }),
   'audit-trail API: the refusal with its reason') or diag($t->{body});
$ng->check_log;
done_testing();
