# Consent at the edge (insite_gdpr_consent) with insite-gdpr's consent API:
# two nginx servers (2 workers each) on one Redis and one worker.  A user
# without the consent gets 403 consent_required; a grant made through one
# server opens both; a withdrawal closes both within 1 s (cached decisions
# dropped by the pub/sub notice); anonymous allow/deny; Redis stopped or
# frozen in both fail modes (never a stalled request); a change made while
# Redis is down reaches the edge when Redis is back; the ledger in
# PostgreSQL; bad input and identity at the API.
#
# Needs INSITE_PG_DSN (scripts/test.sh exports it).  INSITE_GDPR_BIN picks
# the binary.

use strict;
use warnings;
use lib 't/lib';

use Cwd qw(getcwd);
use Digest::SHA qw(hmac_sha256);
use File::Temp ();
use JSON::PP ();
use MIME::Base64 qw(encode_base64url);
use Test::More;
use Time::HiRes qw(time sleep);

use Insite::Nginx;
use Insite::Services qw(free_port wait_port http_request run_cmd start_redis);

for my $v (qw(TEST_NGINX_LOAD_MODULES INSITE_PG_DSN)) {
    plan skip_all => "$v not set (run under scripts/test.sh)" unless $ENV{$v};
}
my $root = getcwd();
my $bin = $ENV{INSITE_GDPR_BIN} // "$root/build/bin/insite-gdpr";
$bin = "$root/$bin" unless $bin =~ m{^/};
plan skip_all => "$bin not built" unless -x $bin;

my $json = JSON::PP->new->utf8->canonical;
my $tmp = File::Temp::tempdir('insite-consent-XXXXXX', TMPDIR => 1, CLEANUP => 1);
chmod 0755, $tmp;
mkdir "$tmp/www";
Test::Nginx::Util::spew("$tmp/www/ok.txt", "ok\n");
my $tag = "c$$";

sub slurp { local (@ARGV, $/) = @_; my $d = <>; $d // '' }
sub wait_for {
    my ($secs, $cond) = @_;
    my $deadline = time + $secs;
    while (time < $deadline) { return 1 if $cond->(); sleep 0.05 }
    return $cond->();
}
sub token {
    my ($sub) = @_;
    my $h = encode_base64url($json->encode({ alg => 'HS256', typ => 'JWT' }));
    my $p = encode_base64url($json->encode({ sub => $sub, exp => time + 3600 }));
    return "$h.$p." . encode_base64url(hmac_sha256("$h.$p", 'consent-secret'));
}
sub psql {
    my ($o, $r) = run_cmd(20, 'psql', $ENV{INSITE_PG_DSN}, '-X', '-qtA', '-v', 'ON_ERROR_STOP=1', '-c', $_[0]);
    die "psql: $o" if $r;
    chomp $o;
    $o;
}

my $redis = start_redis();
my $api = free_port();
my %env = (
    INSITE_PG_DSN => $ENV{INSITE_PG_DSN}, INSITE_PG_MIGRATIONS_DIR => "$root/workers/migrations",
    INSITE_REDIS_PORT => $redis->port, INSITE_REDIS_COMMAND_TIMEOUT => '300ms',
    INSITE_REDIS_CONNECT_TIMEOUT => '300ms',
    INSITE_GDPR_HTTP_PORT => $api, INSITE_GDPR_SYNC_INTERVAL => '100ms',
    INSITE_GDPR_CONSENT_TYPES => 'analytics=2026-01,marketing=3,cookies=1',
);
my $log = "$tmp/gdpr.log";
my $pid = Insite::Services::spawn($bin, \%env, $log);
END { kill 'TERM', $pid if $pid }
ok(wait_port($api, 20), 'insite-gdpr listens') or diag(slurp($log));

mkdir "$tmp/journal";
chmod 0777, "$tmp/journal";
my $http = <<"CONF";
    insite_gdpr_journal $tmp/journal;
    insite_redis 127.0.0.1:${\ $redis->port } connect_timeout=300ms command_timeout=300ms;
CONF
my $server = <<"CONF";
        insite_gateway_jwt_secret "consent-secret";
        location /analytics/ { insite_gateway_jwt on; insite_gdpr_consent analytics;
                               add_header X-Consent \$insite_gdpr_consent always;
                               insite_gdpr_audit on; insite_gdpr_data_type \$insite_gdpr_consent;
                               alias $tmp/www/; }
        location /both/ { insite_gateway_jwt on; insite_gdpr_consent analytics marketing;
                          alias $tmp/www/; }
        location /open/ { insite_gateway_jwt on; insite_gdpr_consent analytics;
                          insite_gdpr_consent_fail open; alias $tmp/www/; }
        location /anon-allow/ { insite_gateway_jwt optional; insite_gdpr_consent cookies;
                                alias $tmp/www/; }
        location /anon-deny/ { insite_gateway_jwt optional; insite_gdpr_consent cookies;
                               insite_gdpr_consent_anonymous deny; alias $tmp/www/; }
        location /api/v1/gdpr/ { insite_gateway_jwt on;
                                 proxy_set_header X-User-Id \$insite_user_id;
                                 proxy_set_header X-Real-IP \$remote_addr;
                                 proxy_pass http://127.0.0.1:$api; }
        location = /metrics { insite_metrics; }
CONF
my @ng = map { Insite::Nginx->new(http => $http, server => $server) } 1 .. 2;

my %tok = map { $_ => token("$tag-$_") } qw(alice bob carol dave);
sub get {
    my ($n, $path, $who, %o) = @_;
    return $n->get($path, headers => { $who ? (Authorization => "Bearer $tok{$who}") : () }, timeout => 5, %o);
}
sub consent {
    my ($n, $who, $type, $granted) = @_;
    my $b = defined $granted ? $json->encode({ consent_type => $type, granted => $granted ? JSON::PP::true : JSON::PP::false })
                             : $type;
    return $n->request('POST', '/api/v1/gdpr/consents',
                       headers => { Authorization => "Bearer $tok{$who}", 'Content-Type' => 'application/json',
                                    'User-Agent' => 'consent-test/1.0' },
                       body => $b, timeout => 5);
}
sub body { my $r = shift; my $b = eval { $json->decode($r->{body}) }; $b // {} }
# every worker of every server answers $want (10 tries each spread the requests)
sub all_say {
    my ($path, $who, $want) = @_;
    for my $n (@ng) {
        for (1 .. 6) { return 0 unless (get($n, $path, $who)->{status} // 0) == $want }
    }
    return 1;
}

# ---- no consent yet (nginx workers connect to Redis just after start)
my $r;
ok(wait_for(10, sub { ($r = get($ng[0], '/analytics/ok.txt', 'alice'))->{status} != 503 }), 'nginx reached Redis');
is($r->{status}, 403, 'no consent: 403');
my $b = body($r);
is($b->{error}, 'consent_required', 'error consent_required');
is_deeply($b->{consent_types}, ['analytics'], 'names the missing type');
like($b->{request_id} // '', qr/\S/, 'carries the request id');
is($r->{headers}{'x-consent'}, 'consent_required', '$insite_gdpr_consent: consent_required');
is(get($ng[0], '/analytics/ok.txt')->{status}, 401, 'no token: the gateway refuses first (401)');

# ---- grant through server 0: both servers serve
$r = consent($ng[0], 'alice', 'analytics', 1);
is($r->{status}, 200, 'grant: 200') or diag($r->{body});
is(body($r)->{policy_version}, '2026-01', 'recorded with the current policy version');
ok(body($r)->{enforced_at_edge}, 'published to Redis');
ok(wait_for(5, sub { all_say('/analytics/ok.txt', 'alice', 200) }), 'granted: 200 on both servers, every worker');
$r = get($ng[1], '/analytics/ok.txt', 'alice');
is($r->{body}, "ok\n", 'the content is served');
is($r->{headers}{'x-consent'}, 'granted', '$insite_gdpr_consent: granted');
$r = get($ng[1], '/both/ok.txt', 'alice');
is($r->{status}, 403, 'two types, one granted: 403');
is_deeply(body($r)->{consent_types}, ['marketing'], 'only the missing type is named');
is(get($ng[0], '/analytics/ok.txt', 'bob')->{status}, 403, "another user's grant does not count");

# ---- withdrawal through server 1: both servers refuse within 1 s
all_say('/analytics/ok.txt', 'alice', 200);        # every worker has it cached
$r = consent($ng[1], 'alice', 'analytics', 0);
is($r->{status}, 200, 'withdrawal: 200') or diag($r->{body});
my $t0 = time;
ok(wait_for(1, sub { all_say('/analytics/ok.txt', 'alice', 403) }), 'withdrawn: 403 on both servers within 1 s')
    or diag(sprintf 'after %.2f s', time - $t0);

# ---- the API and the ledger
$r = $ng[0]->get('/api/v1/gdpr/consents', headers => { Authorization => "Bearer $tok{alice}" });
is($r->{status}, 200, 'GET consents');
my %st = map { $_->{consent_type} => $_ } @{ body($r)->{consents} // [] };
is_deeply([sort keys %st], [qw(analytics cookies marketing)], 'every configured type listed');
ok(!$st{analytics}{granted} && $st{analytics}{policy_version} eq '2026-01', 'analytics: withdrawn, with version');
is($st{marketing}{granted}, JSON::PP::false, 'marketing: never granted');
my $u = "$tag-alice";
is(psql("SELECT string_agg(granted::text || ':' || policy_version || ':' || coalesce(ip, '-') || ':' || coalesce(user_agent, '-'), ',' ORDER BY id)"
        . " FROM user_consent_events WHERE user_id = '$u'"),
   'true:2026-01:127.0.0.1:consent-test/1.0,false:2026-01:127.0.0.1:consent-test/1.0',
   'the ledger keeps grant and withdrawal with IP, user agent and version');
like((run_cmd(10, "psql", $ENV{INSITE_PG_DSN}, "-X", "-qtA", "-c", "DELETE FROM user_consent_events WHERE user_id = '$u'"))[0],
     qr/append-only/, 'the ledger refuses deletes');
consent($ng[0], 'alice', 'analytics', 1);
consent($ng[0], 'alice', 'marketing', 1);
ok(wait_for(5, sub { all_say('/both/ok.txt', 'alice', 200) }), 'both granted: 200');
$r = $ng[0]->request('POST', '/api/v1/gdpr/consents/revoke-all', headers => { Authorization => "Bearer $tok{alice}" });
is($r->{status}, 200, 'revoke-all: 200');
is_deeply(body($r)->{revoked}, [qw(analytics marketing)], 'revoke-all names what it withdrew');
ok(wait_for(1, sub { all_say('/analytics/ok.txt', 'alice', 403) }), 'revoke-all: 403 everywhere within 1 s');

# ---- bad input at the API
for my $case (['{"consent_type":"telepathy","granted":true}', 'unknown_consent_type', 'unknown consent type'],
              ['{"consent_type":"analytics","granted":"yes"}', 'bad_request', 'granted not a boolean'],
              ['{"consent_type":', 'bad_request', 'malformed JSON'],
              ['[]', 'bad_request', 'not an object'])
{
    $r = consent($ng[0], 'alice', $case->[0]);
    is($r->{status}, 400, "$case->[2]: 400");
    is(body($r)->{error}, $case->[1], "$case->[2]: $case->[1]");
}
$r = consent($ng[0], 'alice', '{"consent_type":"' . ('a' x (1 << 20)) . '","granted":true}');
ok($r->{status} == 413 || $r->{status} == 400, "1 MB body refused ($r->{status})");
$r = http_request($api, 'GET', '/api/v1/gdpr/consents');
is($r->{status}, 401, 'the worker without X-User-Id: 401');
$r = http_request($api, 'POST', '/api/v1/gdpr/consents/revoke-all', headers => { 'X-User-Id' => '' });
is($r->{status}, 401, 'empty X-User-Id: 401');

# ---- anonymous requests
is(get($ng[0], '/anon-allow/ok.txt')->{status}, 200, 'anonymous allow: served');
$r = get($ng[0], '/anon-deny/ok.txt');
is($r->{status}, 403, 'anonymous deny: 403');
is_deeply(body($r)->{consent_types}, ['cookies'], 'anonymous deny names the types');
is(get($ng[0], '/anon-deny/ok.txt', 'carol')->{status}, 403, 'a user without the consent on the same location: 403');

# ---- Redis down: fail closed (default) and open, never stalled
consent($ng[0], 'bob', 'analytics', 1);
ok(wait_for(5, sub { all_say('/analytics/ok.txt', 'bob', 200) }), 'bob granted');
$redis->stop;
for my $n (@ng) {
    my $s = time;
    $r = get($n, '/analytics/ok.txt', 'carol');
    is($r->{status}, 503, 'Redis down, fail closed: 503');
    is(body($r)->{error}, 'consent_unavailable', 'reason consent_unavailable');
    cmp_ok(time - $s, '<', 4, 'answered, not stalled');
    is(get($n, '/open/ok.txt', 'carol')->{status}, 200, 'Redis down, fail open: served');
}
# a change while Redis is down: recorded, enforced when Redis is back
$r = consent($ng[0], 'carol', 'analytics', 1);
is($r->{status}, 200, 'grant while Redis is down: recorded');
ok(!body($r)->{enforced_at_edge}, 'reported as not yet at the edge');
$redis->restart;                        # empty: no persistence in tests
ok(wait_for(15, sub { all_say('/analytics/ok.txt', 'carol', 200) }), 'Redis back: the grant reaches the edge');
ok(wait_for(5, sub { all_say('/analytics/ok.txt', 'bob', 200) }), 'Redis restarted empty: state republished');
like(slurp($log), qr/republishing every user/, 'the worker noticed the lost state');

# a frozen Redis: bounded by command_timeout
$redis->freeze;
{
    my $s = time;
    $r = get($ng[1], '/analytics/ok.txt', 'dave');
    is($r->{status}, 503, 'Redis frozen, fail closed: 503');
    cmp_ok(time - $s, '<', 4, 'within the command timeout, not stalled');
}
$redis->thaw;

# ---- the denial is in the audit journal (insite_gdpr_data_type $insite_gdpr_consent)
my @recs = map { eval { $json->decode($_) } // () } map { split /\n/, slurp($_) } glob "$tmp/journal/audit-*.jsonl";
ok((grep { ($_->{user_id} // '') eq "$tag-alice" && $_->{status} == 403 && !$_->{result}
           && ($_->{data_type} // '') eq 'consent_required' } @recs), 'denial journaled as consent_required')
    or diag(scalar(@recs) . ' records');
ok((grep { ($_->{user_id} // '') eq "$tag-alice" && $_->{status} == 200 && ($_->{data_type} // '') eq 'granted' } @recs),
   'granted access journaled');

# ---- metrics
$r = $ng[0]->get('/metrics');
my ($denied) = $r->{body} =~ /^insite_gdpr_consent_denied_total (\d+)/m;
cmp_ok($denied // 0, '>', 0, 'denials counted in insite_metrics');
like($r->{body}, qr/^insite_gdpr_consent_unavailable_total [1-9]/m, 'Redis failures counted');
like($r->{body}, qr/^insite_gdpr_consent_cache_hits_total [1-9]/m, 'decisions served from the cache');
$r = http_request($api, 'GET', '/metrics');
like($r->{body}, qr/^insite_gdpr_consent_changes_total [1-9]/m, 'the worker counts changes');

$_->check_log for @ng;
done_testing();
