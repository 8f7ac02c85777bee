# insite-gdpr erasure end to end: our database and a "backend" database
# (the plan's tables, realistic rows for two users) in a PostgreSQL of the
# test's own, Redis, the Kafka mock.  The worker is killed -9 at three
# points of the job (test hook INSITE_GDPR_TEST_CRASH_FILE); PostgreSQL and Redis
# are stopped mid-job; the request still completes exactly once.  Then: every
# target emptied or anonymized, the other user untouched, the audit trail
# pseudonymized, the receipt verifies and a tampered one does not, the
# user_deleted event read back with kcat, authorization, bad input.
#
# Needs INSITE_KAFKA_BOOTSTRAP (scripts/test.sh).  INSITE_GDPR_BIN picks the
# binary.

use strict;
use warnings;
use lib 't/lib';

use Cwd qw(getcwd);
use File::Temp ();
use JSON::PP ();
use Test::More;
use Time::HiRes qw(time sleep);

use Insite::Services qw(free_port wait_port http_request run_cmd start_redis);

plan skip_all => 'INSITE_KAFKA_BOOTSTRAP not set (run under scripts/test.sh)' unless $ENV{INSITE_KAFKA_BOOTSTRAP};
my $root = getcwd();
my $bin = $ENV{INSITE_GDPR_BIN} // "$root/build/bin/insite-gdpr";
$bin = "$root/$bin" unless $bin =~ m{^/};
plan skip_all => "$bin not built" unless -x $bin;

my $json = JSON::PP->new->utf8->canonical;
my $tmp = File::Temp::tempdir('insite-erasure-XXXXXX', TMPDIR => 1, CLEANUP => 1);
chmod 0755, $tmp;
sub slurp { local (@ARGV, $/) = @_; my $d = <>; $d // '' }
sub spew { Test::Nginx::Util::spew(@_) }
sub wait_for {
    my ($secs, $cond) = @_;
    my $deadline = time + $secs;
    while (time < $deadline) { return 1 if $cond->(); sleep 0.1 }
    return $cond->();
}

# ---- our own PostgreSQL (to stop it), with a backend database
$ENV{INSITE_RUN_DIR} = "$tmp/run";
mkdir "$tmp/run";
my ($out, $rc) = run_cmd(120, "$root/scripts/services.sh", 'start', 'pg');
BAIL_OUT("own PostgreSQL did not start:\n$out") if $rc;
END { local $?; $ENV{INSITE_RUN_DIR} = "$tmp/run"; run_cmd(60, "$root/scripts/services.sh", 'stop', 'pg') }
my %pgenv = slurp("$tmp/run/pg.env") =~ /^(\w+)=(.*)$/mg;
my $dsn = $pgenv{INSITE_PG_DSN};
(my $bdsn = $dsn) =~ s{/insite$}{/backend};
my ($pgbin) = sort { $b cmp $a } glob '/usr/lib/postgresql/*/bin';
sub pg_ctl { run_cmd(60, 'runuser', '-u', 'postgres', '--', "$pgbin/pg_ctl", '-D', "$tmp/run/pg/data",
                     '-l', "$tmp/run/pg/postgres.log", '-s', '-w', @_) }
sub psql {
    my ($d, $sql) = @_;
    my ($o, $r) = run_cmd(20, 'psql', $d, '-X', '-qtA', '-v', 'ON_ERROR_STOP=1', '-c', $sql);
    die "psql: $o" if $r;
    chomp $o;
    $o;
}
sub psql_try { my ($o, $r) = run_cmd(5, 'psql', $dsn, '-X', '-qtA', '-c', $_[0]); $r ? undef : $o }
run_cmd(20, 'psql', '-X', '-h', '127.0.0.1', '-p', $pgenv{INSITE_PG_PORT}, '-U', 'postgres', '-d', 'postgres',
        '-qc', 'CREATE DATABASE backend OWNER insite');
my ($A, $B) = ("alice-$$", "bob-$$");
psql($bdsn, <<"SQL");
CREATE TABLE users (id text PRIMARY KEY, email text, name text, created_at timestamptz DEFAULT now());
CREATE TABLE watchlist_items (id serial PRIMARY KEY, user_id text, symbol text, added_at timestamptz DEFAULT now());
CREATE TABLE search_history (id serial PRIMARY KEY, user_id text, query text, searched_at timestamptz DEFAULT now());
CREATE TABLE user_sessions (id serial PRIMARY KEY, user_id text, ip_address text, user_agent text);
CREATE TABLE user_activity (id serial PRIMARY KEY, user_id text, action text, at timestamptz DEFAULT now());
CREATE TABLE user_behavior (id serial PRIMARY KEY, user_id text, feature text, score real);
CREATE TABLE user_feedback (id serial PRIMARY KEY, user_id text, email text, ip_address text, body text);
CREATE TABLE api_keys (id serial PRIMARY KEY, user_id text, key_hash text);
CREATE TABLE user_notification_settings (user_id text PRIMARY KEY, email_alerts boolean);
INSERT INTO users VALUES ('$A', 'alice\@example.com', 'Alice'), ('$B', 'bob\@example.com', 'Bob');
INSERT INTO watchlist_items (user_id, symbol) SELECT u, s FROM (VALUES ('$A'), ('$B')) v(u), unnest(ARRAY['AAPL','MSFT','TSLA']) s;
INSERT INTO search_history (user_id, query) SELECT u, 'q' || g FROM (VALUES ('$A'), ('$B')) v(u), generate_series(1, 50) g;
INSERT INTO user_sessions (user_id, ip_address, user_agent) VALUES ('$A', '10.0.0.1', 'Firefox'), ('$B', '10.0.0.2', 'Chrome');
INSERT INTO user_activity (user_id, action) SELECT u, 'view' FROM (VALUES ('$A'), ('$B')) v(u), generate_series(1, 20);
INSERT INTO user_behavior (user_id, feature, score) VALUES ('$A', 'charts', 0.7), ('$B', 'charts', 0.2);
INSERT INTO user_feedback (user_id, email, ip_address, body) VALUES ('$A', 'alice\@example.com', '10.0.0.1', 'great'), ('$B', 'bob\@example.com', '10.0.0.2', 'meh');
INSERT INTO api_keys (user_id, key_hash) VALUES ('$A', 'h1'), ('$B', 'h2');
INSERT INTO user_notification_settings VALUES ('$A', true), ('$B', false);
SQL

# the shipped data map, pointed at this backend
my $map = $json->decode(slurp("$root/workers/gdpr/datamap.json"));
$map->{databases}{backend} = $bdsn;
spew("$tmp/map.json", $json->encode($map));
spew("$tmp/psn.key", "0123456789abcdef0123456789abcdef");
run_cmd(10, 'openssl', 'genpkey', '-algorithm', 'ed25519', '-out', "$tmp/sign.pem");
run_cmd(10, 'openssl', 'pkey', '-in', "$tmp/sign.pem", '-pubout', '-out', "$tmp/sign.pub");

my $redis = start_redis();
my $api = free_port();
my %env = (
    INSITE_PG_DSN => $dsn, INSITE_PG_MIGRATIONS_DIR => "$root/workers/migrations",
    INSITE_REDIS_PORT => $redis->port, INSITE_GDPR_HTTP_PORT => $api, INSITE_GDPR_SYNC_INTERVAL => '100ms',
    INSITE_GDPR_DATA_MAP => "$tmp/map.json", INSITE_GDPR_PSEUDONYM_KEY => "$tmp/psn.key",
    INSITE_GDPR_SIGNING_KEY => "$tmp/sign.pem", INSITE_KAFKA_BOOTSTRAP => $ENV{INSITE_KAFKA_BOOTSTRAP},
    INSITE_KAFKA_LINGER => '5ms', INSITE_KAFKA_SPOOL_DIR => "$tmp/spool",
    INSITE_GDPR_TEST_CRASH_FILE => "$tmp/crash",
);
my $log = "$tmp/gdpr.log";
my $pid;
sub start {
    $pid = Insite::Services::spawn($bin, \%env, $log);
    ok(wait_port($api, 20), "insite-gdpr listens (pid $pid)") or diag(slurp($log));
}
END { kill 'KILL', $pid if $pid }
sub call {
    my ($who, $method, $path, $body, %h) = @_;
    my $r = http_request($api, $method, $path, headers => { ($who ? ('X-User-Id' => $who) : ()), %h },
                         defined $body ? (body => $body) : (), timeout => 10);
    $r->{json} = eval { $json->decode($r->{body}) } // {};
    return $r;
}

# seed our side: consents, audit trail rows, Redis keys
spew("$tmp/crash", "none");
start();
call($A, 'POST', '/api/v1/gdpr/consents', '{"consent_type":"analytics","granted":true}');
call($B, 'POST', '/api/v1/gdpr/consents', '{"consent_type":"analytics","granted":true}');
for my $u ($A, $B) {
    psql($dsn, "INSERT INTO gdpr_audit_trail (id, ts, user_id, access_type, method, path, status, result, worker, seq,"
         . " prev_hash, hash, source, record) SELECT gen_random_uuid(), now(), '$u', 'read', 'GET', '/p', 200, true, '0',"
         . " g, 'x', 'y', 'test', '{\"user_id\":\"$u\",\"path\":\"/p\"}' FROM generate_series(1, 3) g");
}
$redis->cli('RPUSH', "insite:{alert:$A}:hist", 'x');
$redis->cli('SET', "insite:{alert:$A}:seq", 'x');
is($redis->cli('EXISTS', "insite:consent:{$A}"), '1', 'consent state in Redis');

# ---- bad input and identity
for my $case (['{"confirmation":"yes"}', 'wrong confirmation'], ['{"confirmation":', 'malformed JSON'], ['[]', 'not an object']) {
    my $r = call($A, 'POST', '/api/v1/gdpr/delete', $case->[0]);
    is($r->{status}, 400, "$case->[1]: 400");
    ok($r->{json}{error}, "$case->[1]: JSON reason ($r->{json}{error})");
}
is(call(undef, 'POST', '/api/v1/gdpr/delete', '{"confirmation":"DELETE_MY_DATA"}')->{status}, 401, 'no user: 401');
my $big = call($A, 'POST', '/api/v1/gdpr/delete', '{"confirmation":"' . ('x' x (1 << 20)) . '"}');
ok($big->{status} == 413 || $big->{status} == 400, "1 MB body refused ($big->{status})");
is(psql($dsn, "SELECT count(*) FROM gdpr_deletion_requests"), 0, 'nothing requested by bad input');

# ---- the request, with a crash at the first point
spew("$tmp/crash", 'pg:backend_search_history');
my $r = call($A, 'POST', '/api/v1/gdpr/delete', '{"confirmation":"DELETE_MY_DATA"}');
is($r->{status}, 202, 'delete: 202');
my $id = $r->{json}{request_id};
like($id // '', qr/^[0-9a-f-]{36}$/, 'a request id');
is($r->{json}{status}, 'pending', 'status pending');
is(call($A, 'POST', '/api/v1/gdpr/delete', '{"confirmation":"DELETE_MY_DATA"}')->{json}{request_id}, $id,
   'asking again returns the open request');
ok(wait_for(20, sub { waitpid($pid, 1) == $pid }), 'worker killed itself at pg:backend_search_history');
is(call($B, 'GET', "/api/v1/gdpr/deletion-status/$id")->{status}, 503, 'worker down: (sanity) not reachable')
    if 0;

for my $point ('redis:consent_state', 'before-verify') {
    spew("$tmp/crash", $point);
    start();
    ok(wait_for(30, sub { waitpid($pid, 1) == $pid }), "worker killed -9 at $point") or diag(slurp($log));
}

# PostgreSQL and Redis stopped under the running job: it waits, then finishes
spew("$tmp/crash", 'before-complete');
start();
ok(wait_for(30, sub { waitpid($pid, 1) == $pid }), 'killed -9 at before-complete (receipt signed, not stored)');
psql($dsn, "UPDATE gdpr_deletion_steps SET done_at = NULL WHERE target IN ('redis:alert_history', 'kafka')");
spew("$tmp/crash", 'pause:redis:alert_history');
start();
ok(wait_for(30, sub { slurp($log) =~ /pausing 4s at redis:alert_history/ }), 'job paused mid-way');
($out, $rc) = pg_ctl('-m', 'immediate', 'stop');
is($rc, 0, 'PostgreSQL stopped under the job') or diag($out);
$redis->stop;                              # and Redis with it
sleep 5;
is(psql_try("SELECT 1"), undef, '(PostgreSQL really down)');
($out, $rc) = pg_ctl('start');
is($rc, 0, 'PostgreSQL started again') or diag($out);
$redis->restart;                           # empty: the worker republishes consent state
$redis->cli('RPUSH', "insite:{alert:$A}:hist", 'x');   # written meanwhile: must be erased too
ok(wait_for(30, sub { psql($dsn, "SELECT status FROM gdpr_deletion_requests WHERE id = '$id'") eq 'completed' }),
   'the request completed') or diag(slurp($log));
like(slurp($log), qr/erasure: .*(?:connect|terminat|closed|shut)/i, 'the job met the outage and retried');

# ---- status, authorization
$r = call($A, 'GET', "/api/v1/gdpr/deletion-status/$id");
is($r->{status}, 200, 'requester reads the status');
is($r->{json}{status}, 'completed', 'completed');
my %t = map { $_->{target} => $_ } @{ $r->{json}{targets} };
ok(!grep({ !$_->{done} } values %t), 'every target done');
is($t{'pg:backend_search_history'}{rows}, 50, 'search history: 50 rows deleted, counted once');
is($t{'pg:backend_user_activity'}{rows}, 20, 'activity: 20 rows');
is($t{'pg:audit_trail'}{action}, 'retain', 'audit trail retained');
is(call($B, 'GET', "/api/v1/gdpr/deletion-status/$id")->{status}, 404, "another user: 404");
is(call($B, 'DELETE', "/api/v1/gdpr/delete/$id")->{status}, 404, "another user cannot cancel: 404");
is(call($B, 'GET', "/api/v1/gdpr/deletion-status/$id", undef, 'X-User-Scopes' => 'gdpr:admin')->{status}, 200,
   'an operator (gdpr:admin) reads it');
is(call($A, 'GET', "/api/v1/gdpr/deletion-status/not-a-uuid")->{status}, 404, 'malformed id: 404');
is(call($A, 'DELETE', "/api/v1/gdpr/delete/$id")->{status}, 409, 'a completed request cannot be cancelled');
is(psql($dsn, "SELECT count(*) FROM gdpr_deletion_requests WHERE user_id IS NOT NULL AND id = '$id'"), 0,
   'the request forgets the user id');
is(psql($dsn, "SELECT count(*) FROM gdpr_deletion_requests"), 1, 'one request, completed exactly once');

# ---- the data
for my $tb (qw(watchlist_items search_history user_sessions user_activity user_behavior api_keys user_notification_settings)) {
    is(psql($bdsn, "SELECT count(*) FROM $tb WHERE user_id = '$A'"), 0, "backend $tb: alice gone");
    cmp_ok(psql($bdsn, "SELECT count(*) FROM $tb WHERE user_id = '$B'"), '>', 0, "backend $tb: bob kept");
}
is(psql($bdsn, "SELECT count(*) FROM users WHERE id = '$A'"), 0, 'backend users: alice gone');
is(psql($bdsn, "SELECT count(*) FROM user_feedback WHERE body = 'great' AND email IS NULL AND ip_address IS NULL"
            . " AND user_id LIKE 'psn:%'"), 1, 'feedback anonymized (kept, no email/ip, pseudonym)');
is(psql($bdsn, "SELECT email FROM user_feedback WHERE user_id = '$B'"), 'bob@example.com', "bob's feedback intact");
is(psql($dsn, "SELECT count(*) FROM user_consent_events WHERE user_id = '$A'"), 0, 'consent ledger: alice gone');
is(psql($dsn, "SELECT count(*) FROM user_consent_events WHERE user_id = '$B'"), 1, "consent ledger: bob's kept");
is(psql($dsn, "SELECT count(*) FROM gdpr_audit_trail WHERE user_id = '$A' OR strpos(record, '$A') > 0"), 0,
   'audit trail: alice not in the clear');
is(psql($dsn, "SELECT count(*) FROM gdpr_audit_trail WHERE user_id LIKE 'psn:%' AND record LIKE '%psn:%'"), 3,
   'audit trail: rows kept, pseudonymized');
is($redis->cli('EXISTS', "insite:consent:{$A}", "insite:{alert:$A}:hist", "insite:{alert:$A}:seq"), '0', 'Redis keys gone');
ok(wait_for(10, sub { $redis->cli('EXISTS', "insite:consent:{$B}") eq '1' }), "bob's Redis state kept (republished)");

# ---- the receipt
$r = call($A, 'GET', "/api/v1/gdpr/deletion-status/$id");
spew("$tmp/receipt.json", $json->encode($r->{json}{receipt}));
($out, $rc) = run_cmd(10, $bin, 'verify-receipt', "$tmp/receipt.json", "$tmp/sign.pub");
is($rc, 0, 'the receipt verifies') or diag($out);
my $p = $json->decode($r->{json}{receipt}{payload});
is($p->{request_id}, $id, 'receipt names the request');
unlike($r->{json}{receipt}{payload}, qr/\Q$A\E/, 'the receipt does not name the user in the clear');
(my $forged = $r->{json}{receipt}{payload}) =~ s/"rows":50/"rows":5/;
spew("$tmp/forged.json", $json->encode({ payload => $forged, signature => $r->{json}{receipt}{signature} }));
($out, $rc) = run_cmd(10, $bin, 'verify-receipt', "$tmp/forged.json", "$tmp/sign.pub");
isnt($rc, 0, 'a tampered receipt is rejected');
like($out, qr/signature does not verify/, 'with the reason');

# ---- Kafka: user_deleted keyed by the user, once per request id
($out) = run_cmd(30, 'kcat', '-C', '-b', $ENV{INSITE_KAFKA_BOOTSTRAP}, '-t', 'user_events', '-o', 'beginning', '-e', '-q',
                 '-f', '%k\t%s\n');
my @ev = grep { /\t/ && (split /\t/)[0] eq $A } split /\n/, $out;
ok(@ev >= 1, 'user_deleted on user_events, keyed by the user');
my %ids = map { $json->decode((split /\t/, $_, 2)[1])->{event_id} => 1 } @ev;
is_deeply([keys %ids], [$id], 'every copy carries the request id as event_id (consumers dedupe)');
is($json->decode((split /\t/, $ev[0], 2)[1])->{event_type}, 'user_deleted', 'event type user_deleted');

# ---- metrics
$r = http_request($api, 'GET', '/metrics');
like($r->{body}, qr/^insite_gdpr_erasure_requests_completed 1/m, 'requests by status');
like($r->{body}, qr/^insite_gdpr_erasure_oldest_open_seconds 0/m, 'no open request');

done_testing();
