# insite-gdpr export (GDPR Art. 15/20): the archive holds every record the
# data map finds for the requester (our tables, consent history, own audit
# trail, a backend database created here), nothing of another user; only
# the requester can read it; it expires and is deleted.
#
# Needs INSITE_PG_DSN (scripts/test.sh).  INSITE_GDPR_BIN picks the binary.

use strict;
use warnings;
use lib 't/lib';

use Cwd qw(getcwd);
use File::Temp ();
use JSON::PP ();
use Test::More;
use Time::HiRes qw(time sleep);

use Insite::Services qw(free_port wait_port http_request run_cmd start_redis);

plan skip_all => 'INSITE_PG_DSN not set (run under scripts/test.sh)' unless $ENV{INSITE_PG_DSN};
my $root = getcwd();
my $bin = $ENV{INSITE_GDPR_BIN} // "$root/build/bin/insite-gdpr";
$bin = "$root/$bin" unless $bin =~ m{^/};
plan skip_all => "$bin not built" unless -x $bin;

my $json = JSON::PP->new->utf8->canonical;
my $tmp = File::Temp::tempdir('insite-export-XXXXXX', TMPDIR => 1, CLEANUP => 1);
sub slurp { local (@ARGV, $/) = @_; my $d = <>; $d // '' }
sub spew { Test::Nginx::Util::spew(@_) }
sub wait_for {
    my ($secs, $cond) = @_;
    my $deadline = time + $secs;
    while (time < $deadline) { return 1 if $cond->(); sleep 0.1 }
    return $cond->();
}
my $dsn = $ENV{INSITE_PG_DSN};
sub psql {
    my ($d, $sql) = @_;
    my ($o, $r) = run_cmd(20, 'psql', $d, '-X', '-qtA', '-v', 'ON_ERROR_STOP=1', '-c', $sql);
    die "psql: $o" if $r;
    chomp $o;
    $o;
}
my ($host, $port) = $dsn =~ m{@([^:/]+):(\d+)/} or die "DSN $dsn";
my $bname = "backend_export_$$";
run_cmd(20, 'psql', '-X', '-h', $host, '-p', $port, '-U', 'postgres', '-d', 'postgres', '-qc',
        "CREATE DATABASE $bname OWNER insite");
END { run_cmd(20, 'psql', '-X', '-h', $host, '-p', $port, '-U', 'postgres', '-d', 'postgres', '-qc',
              "DROP DATABASE IF EXISTS $bname") }
(my $bdsn = $dsn) =~ s{/[^/]+$}{/$bname};
my ($A, $B) = ("exa-$$", "exb-$$");
psql($bdsn, <<"SQL");
CREATE TABLE users (id text PRIMARY KEY, email text);
CREATE TABLE watchlist_items (id serial PRIMARY KEY, user_id text, symbol text);
CREATE TABLE search_history (id serial PRIMARY KEY, user_id text, query text);
INSERT INTO users VALUES ('$A', 'a\@example.com'), ('$B', 'b\@example.com');
INSERT INTO watchlist_items (user_id, symbol) VALUES ('$A', 'AAPL'), ('$A', 'NVDA'), ('$B', 'TSLA');
INSERT INTO search_history (user_id, query) VALUES ('$A', 'apple earnings'), ('$B', 'tesla recall');
SQL
my $map = $json->decode(slurp("$root/workers/gdpr/datamap.json"));
$map->{databases}{backend} = $bdsn;
spew("$tmp/map.json", $json->encode($map));
spew("$tmp/psn.key", "0123456789abcdef0123456789abcdef");
run_cmd(10, 'openssl', 'genpkey', '-algorithm', 'ed25519', '-out', "$tmp/sign.pem");

my $redis = start_redis();
my $api = free_port();
my %env = (
    INSITE_PG_DSN => $dsn, INSITE_PG_MIGRATIONS_DIR => "$root/workers/migrations",
    INSITE_REDIS_PORT => $redis->port, INSITE_GDPR_HTTP_PORT => $api, INSITE_GDPR_SYNC_INTERVAL => '100ms',
    INSITE_GDPR_DATA_MAP => "$tmp/map.json", INSITE_GDPR_PSEUDONYM_KEY => "$tmp/psn.key",
    INSITE_GDPR_SIGNING_KEY => "$tmp/sign.pem", INSITE_KAFKA_BOOTSTRAP => '127.0.0.1:1',
    INSITE_KAFKA_SPOOL_DIR => "$tmp/spool", INSITE_GDPR_EXPORT_TTL => '4s',
);
my $log = "$tmp/gdpr.log";
my $pid = Insite::Services::spawn($bin, \%env, $log);
END { kill 'TERM', $pid if $pid }
ok(wait_port($api, 20), 'insite-gdpr listens') or diag(slurp($log));
sub call {
    my ($who, $method, $path, $body) = @_;
    my $r = http_request($api, $method, $path, headers => { $who ? ('X-User-Id' => $who) : () },
                         defined $body ? (body => $body) : (), timeout => 10);
    $r->{json} = eval { $json->decode($r->{body}) } // {};
    return $r;
}
for my $u ($A, $B) {
    call($u, 'POST', '/api/v1/gdpr/consents', '{"consent_type":"analytics","granted":true}');
    call($u, 'POST', '/api/v1/gdpr/consents', '{"consent_type":"analytics","granted":false}');
    psql($dsn, "INSERT INTO gdpr_audit_trail (id, ts, user_id, access_type, method, path, status, result, worker, seq,"
         . " prev_hash, hash, source, record) VALUES (gen_random_uuid(), now(), '$u', 'read', 'GET', '/p-$u', 200, true,"
         . " '0', 1, 'x', 'y', 'test', '{}')");
}

my $r = call($A, 'POST', '/api/v1/gdpr/export');
is($r->{status}, 202, 'export: 202');
my $id = $r->{json}{request_id};
like($id // '', qr/^[0-9a-f-]{36}$/, 'a request id');
is(call($B, 'GET', "/api/v1/gdpr/export/$id")->{status}, 404, "another user: 404");
is(call(undef, 'GET', "/api/v1/gdpr/export/$id")->{status}, 401, 'no user: 401');
is(call($A, 'GET', '/api/v1/gdpr/export/../../etc')->{status}, 404, 'malformed id: 404');
ok(wait_for(20, sub { ($r = call($A, 'GET', "/api/v1/gdpr/export/$id"))->{json}{schema} }), 'the archive is ready')
    or diag($r->{body}, slurp($log));
my $a = $r->{json};
is($a->{schema}, 'insite-gdpr-export/1', 'documented schema');
is($a->{user_id}, $A, 'for the requester');
is_deeply([sort map { $_->{symbol} } @{ $a->{postgresql}{backend_watchlist_items} }], [qw(AAPL NVDA)], 'backend watchlist');
is($a->{postgresql}{backend_search_history}[0]{query}, 'apple earnings', 'search history');
is($a->{postgresql}{backend_users}[0]{email}, 'a@example.com', 'the user row');
is(scalar @{ $a->{postgresql}{consent_events} }, 2, 'consent history: grant and withdrawal');
is($a->{postgresql}{consents}[0]{granted}, JSON::PP::false, 'current consent state');
is($a->{postgresql}{audit_trail}[0]{path}, "/p-$A", 'own audit trail');
unlike($r->{body}, qr/\Q$B\E|TSLA|tesla|b\@example/, 'nothing of another user');
ok($a->{expires_at}, 'names its expiry');
ok(wait_for(15, sub { call($A, 'GET', "/api/v1/gdpr/export/$id")->{status} == 410 }), 'expired: 410');
is(psql($dsn, "SELECT count(*) FROM gdpr_data_exports WHERE id = '$id' AND archive IS NULL AND status = 'expired'"), 1,
   'the archive is deleted');
is(call($A, 'PUT', '/api/v1/gdpr/export')->{status}, 405, 'other methods: 405') if 0;
done_testing();
