# The retention operator API and the worker's own daily timer: a slot
# missed while the worker was down runs at start; an operator edit through
# PUT /api/v1/gdpr/retention/policies/{data_type} (gdpr:admin only, logged
# in gdpr_audit_log with the operator) applies at the next scheduled run
# without a restart; bad input gets 400 JSON and changes nothing.

use strict;
use warnings;
use lib 't/lib';

use JSON::PP ();
use POSIX ();
use Test::More;

use Insite::GDPRWorker qw(psql wait_for slurp);
use Insite::Services qw(free_port wait_port http_request);

plan skip_all => 'INSITE_KAFKA_BOOTSTRAP not set (run under scripts/test.sh)' unless $ENV{INSITE_KAFKA_BOOTSTRAP};
my $w = Insite::GDPRWorker::setup();
plan skip_all => "$w->{bin} not built" unless -x $w->{bin};
my $dsn = $w->{dsn};
my $json = JSON::PP->new->utf8->canonical;

Insite::GDPRWorker::retention_now($w, 1);          # migrations
psql($dsn, "INSERT INTO stock_prices (symbol, ts, interval, source) SELECT 'AAPL', now() - interval '800 days' - g * interval '1 minute', '1m', 'old' FROM generate_series(1, 5) g;"
     . " INSERT INTO stock_prices (symbol, ts, interval, source) SELECT 'AAPL', now() - interval '20 days' - g * interval '1 minute', '1m', 'mid' FROM generate_series(1, 7) g;"
     . " INSERT INTO stock_prices (symbol, ts, interval, source) SELECT 'AAPL', now() - g * interval '1 minute', '1m', 'new' FROM generate_series(1, 3) g");

# the next minute boundary at least 20 s away (UTC)
my $t = time + 20;
$t += 60 - $t % 60;
my $hhmm = POSIX::strftime('%H:%M', gmtime $t);
my $api = free_port();
my %env = (%{ $w->{env} }, INSITE_GDPR_HTTP_PORT => $api, INSITE_GDPR_RETENTION_TIME => $hhmm);
my $pid = Insite::Services::spawn($w->{bin}, \%env, "$w->{tmp}/gdpr.log");
END { kill 'KILL', $pid if $pid }
ok(wait_port($api, 20), "insite-gdpr listens, retention at $hhmm UTC") or diag(slurp("$w->{tmp}/gdpr.log"));

# ---- the missed slot (yesterday's) runs at start
ok(wait_for(30, sub { psql($dsn, "SELECT count(*) FROM gdpr_audit_log WHERE data_type = 'price_history' AND status = 'completed'") == 1 }),
   'the slot missed while down ran at start') or diag(slurp("$w->{tmp}/gdpr.log"));
is(psql($dsn, "SELECT string_agg(DISTINCT source, ',' ORDER BY source) FROM stock_prices"), 'mid,new', 'it deleted the 800-day-old bars');

sub call {
    my ($who, $scopes, $method, $path, $body) = @_;
    my $r = http_request($api, $method, $path, headers => { ($who ? ('X-User-Id' => $who) : ()),
                         ($scopes ? ('X-User-Scopes' => $scopes) : ()) }, defined $body ? (body => $body) : (), timeout => 10);
    $r->{json} = eval { $json->decode($r->{body}) } // {};
    return $r;
}
my @op = ('ops', 'openid gdpr:admin');

# ---- authorization
is(call(undef, undef, 'GET', '/api/v1/gdpr/retention/policies')->{status}, 401, 'no user: 401');
my $r = call('alice', 'openid', 'GET', '/api/v1/gdpr/retention/policies');
is($r->{status}, 403, 'a user without gdpr:admin: 403');
is($r->{json}{error}, 'insufficient_scope', '403 reason');
is(call('alice', 'openid', 'PUT', '/api/v1/gdpr/retention/policies/price_history', '{"retention_days":1}')->{status}, 403,
   'a user cannot edit a policy');
is(call('alice', 'openid', 'GET', '/api/v1/gdpr/retention/runs')->{status}, 403, 'a user cannot read the runs');

# ---- list
$r = call(@op, 'GET', '/api/v1/gdpr/retention/policies');
is($r->{status}, 200, 'operator lists the policies');
my %p = map { $_->{data_type} => $_ } @{ $r->{json}{policies} // [] };
is(scalar(keys %p), 11, '11 policies');
is($p{price_history}{retention_days}, 730, 'price_history 730 d');
is($p{price_history}{target}, 'stock_prices', 'mapped to the stock_prices target');
is($p{price_history}{last_run}{status}, 'completed', 'with its last run');

# ---- bad input: 400 JSON, nothing changes
for my $case (['{"retention_days":0}', 'days 0'], ['{"retention_days":"30"}', 'days a string'],
              ['{"retention_days":36501}', 'days too many'], ['{"is_active":"yes"}', 'is_active not boolean'],
              ['{"retention_dayz":30}', 'unknown field'], ['{"target":"nowhere"}', 'unknown target'],
              ['{"target":"x; DROP TABLE y"}', 'target not an identifier'], ['[]', 'not an object'],
              ['{"retention_days":', 'malformed JSON'], ['{}', 'empty object']) {
    $r = call(@op, 'PUT', '/api/v1/gdpr/retention/policies/price_history', $case->[0]);
    is($r->{status}, 400, "$case->[1]: 400");
    ok($r->{json}{error} && $r->{json}{message}, "$case->[1]: JSON reason ($r->{json}{message})");
}
is(psql($dsn, "SELECT retention_days FROM gdpr_retention_policies WHERE data_type = 'price_history'"), 730, 'nothing changed');
is(call(@op, 'PUT', '/api/v1/gdpr/retention/policies/nosuch', '{"retention_days":5}')->{status}, 404,
   'unknown policy without a target: 404');
is(call(@op, 'PUT', '/api/v1/gdpr/retention/policies/Bad-Name', '{"retention_days":5}')->{status}, 404, 'bad data type: 404');
is(call(@op, 'GET', '/api/v1/gdpr/retention/policies/price_history')->{status}, 405, 'GET one: 405');
is(call(@op, 'GET', '/api/v1/gdpr/retention/runs?limit=1abc')->{status}, 400, 'runs: limit=1abc 400');

# ---- create and edit
$r = call(@op, 'PUT', '/api/v1/gdpr/retention/policies/old_exports', '{"target":"export_requests","retention_days":30,"is_active":false}');
is($r->{status}, 201, 'a new policy: 201');
is($r->{json}{is_active}, JSON::PP::false, 'created inactive');
$r = call(@op, 'PUT', '/api/v1/gdpr/retention/policies/price_history', '{"retention_days":10,"legal_basis":"test"}');
is($r->{status}, 200, 'edit: 200');
is($r->{json}{retention_days}, 10, 'edit: 10 days');
is($r->{json}{updated_by}, 'ops', 'edit: by the operator');
is(psql($dsn, "SELECT user_id || '|' || (details->>'retention_days') FROM gdpr_audit_log WHERE action = 'retention_policy_updated' AND data_type = 'price_history'"),
   'ops|10', 'the edit is in gdpr_audit_log with the operator');
$r = call(@op, 'GET', '/api/v1/gdpr/retention/runs?limit=500');
is($r->{status}, 200, 'runs: 200');
ok((grep { $_->{action} eq 'automated_deletion' && $_->{data_type} eq 'price_history' } @{ $r->{json}{runs} }), 'runs list the deletion');

# ---- the next scheduled run applies the edit, same process
ok(wait_for(150, sub { psql($dsn, "SELECT count(*) FROM gdpr_audit_log WHERE data_type = 'price_history' AND action = 'automated_deletion' AND status = 'completed'") == 2 }),
   "the $hhmm run happened") or diag(slurp("$w->{tmp}/gdpr.log"));
is(psql($dsn, "SELECT string_agg(DISTINCT source, ',') FROM stock_prices"), 'new', 'with the edited 10 days: the 20-day-old bars went');
is(psql($dsn, "SELECT rows_affected FROM gdpr_audit_log WHERE data_type = 'price_history' ORDER BY id DESC LIMIT 1"), 7, 'logged: 7 rows');
is(psql($dsn, "SELECT count(*) FROM gdpr_audit_log WHERE data_type = 'old_exports' AND action = 'automated_deletion'"), 0, 'an inactive policy does not run');
is(waitpid($pid, POSIX::WNOHANG()), 0, 'no restart: the same worker');
like(http_request($api, 'GET', '/metrics')->{body}, qr/insite_gdpr_retention_rows_deleted_total 12\b/, 'metric: 12 rows deleted');

done_testing();
