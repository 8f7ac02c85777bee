# Incidents detected as audit records arrive (docs/gdpr-retention.md): 120
# requests by one user through nginx (the gdpr module auditing, auditd
# shipping into a PostgreSQL of the test's own, insite-gdpr watching the
# trail) give exactly one HIGH excessive_access incident for that user and
# hour, within seconds; more requests and more looks do not duplicate it;
# a security_incident event on system_events and the metric say the same;
# another user with 30 requests has none.

use strict;
use warnings;
use lib 't/lib';

use JSON::PP ();
use Test::More;

use Insite::GDPRWorker qw(psql wait_for slurp);
use Insite::Nginx;
use Insite::Services qw(free_port wait_port http_request run_cmd);

for my $v (qw(TEST_NGINX_LOAD_MODULES INSITE_KAFKA_BOOTSTRAP)) {
    plan skip_all => "$v not set (run under scripts/test.sh)" unless $ENV{$v};
}
my $w = Insite::GDPRWorker::setup();
plan skip_all => "$w->{bin} not built" unless -x $w->{bin};
my $auditd = "$w->{root}/build/bin/insite-auditd";
my $json = JSON::PP->new->utf8;
my $tmp = $w->{tmp};
my ($mallory, $alice) = ("mallory$$", "alice$$");

Insite::GDPRWorker::retention_now($w, 1);          # migrations

# ---- nginx audits, auditd ships, insite-gdpr watches
my $j = "$tmp/journal";
my $n = Insite::Nginx->new(http => "    insite_gdpr_journal $j;\n", server => <<'CONF');
        insite_gdpr_audit_user $http_x_user;
        location /api/v1/portfolio { insite_gdpr_audit on; insite_gdpr_data_type portfolio; return 200; }
CONF
my $ship = Insite::Services::spawn($auditd, {
    INSITE_PG_DSN => $w->{dsn}, INSITE_PG_MIGRATIONS_DIR => "$w->{root}/workers/migrations",
    INSITE_AUDITD_JOURNAL_DIR => $j, INSITE_AUDITD_SOURCE => "incidents-$$", INSITE_AUDITD_HTTP_PORT => free_port(),
    INSITE_AUDITD_POLL_INTERVAL => '50ms', INSITE_AUDITD_KAFKA => 'false',
}, "$tmp/auditd.log");
my $api = free_port();
my $gdpr = Insite::Services::spawn($w->{bin}, { %{ $w->{env} }, INSITE_GDPR_HTTP_PORT => $api,
    INSITE_GDPR_SYNC_INTERVAL => '100ms', INSITE_GDPR_INCIDENT_INTERVAL => '200ms' }, "$tmp/gdpr.log");
END { for ($ship, $gdpr) { if ($_) { kill 'TERM', $_; waitpid $_, 0 } } }
ok(wait_port($api, 20), 'insite-gdpr listens') or diag(slurp("$tmp/gdpr.log"));

sub shipped { psql($w->{dsn}, "SELECT count(*) FROM gdpr_audit_trail WHERE user_id = '$_[0]'") }
sub metric {
    my ($re) = @_;
    my $m = http_request($api, 'GET', '/metrics')->{body} // '';
    return $m =~ /^$re (\d+)/m ? $1 : 0;
}
sub incidents { psql($w->{dsn}, "SELECT count(*) || '|' || coalesce(string_agg(severity || ':' || kind, ','), '') FROM security_incidents WHERE user_id = '$_[0]'") }

my @st = map { $n->get('/api/v1/portfolio', headers => { 'X-User' => $mallory })->{status} } 1 .. 120;
is(scalar(grep { $_ == 200 } @st), 120, '120 requests served');
$n->get('/api/v1/portfolio', headers => { 'X-User' => $alice }) for 1 .. 30;
ok(wait_for(30, sub { shipped($mallory) == 120 }), 'all 120 records shipped') or diag(slurp("$tmp/auditd.log"));
ok(wait_for(30, sub { incidents($mallory) =~ /HIGH/ }), 'a HIGH incident appears within seconds') or diag(slurp("$tmp/gdpr.log"));
is(incidents($mallory), '1|HIGH:excessive_access', 'exactly one incident for the user: HIGH excessive_access');
is(psql($w->{dsn}, "SELECT (details->>'accesses')::int >= 101 AND window_start = date_trunc('hour', now()) FROM security_incidents WHERE user_id = '$mallory'")
   . '', 't', 'details: the count, and the hour it belongs to');

# more requests and more looks: still one row
$n->get('/api/v1/portfolio', headers => { 'X-User' => $mallory }) for 1 .. 10;
ok(wait_for(30, sub { shipped($mallory) == 130 }), '10 more shipped');
my $looks = metric('insite_gdpr_incident_checks_total');
ok(wait_for(30, sub { metric('insite_gdpr_incident_checks_total') >= $looks + 5 }), 'five more looks at the trail');
is(incidents($mallory), '1|HIGH:excessive_access', 'not duplicated');
is(incidents($alice), '0|', 'a user with 30 requests: no incident');
is(metric('insite_gdpr_security_incidents_total\{kind="excessive_access",severity="HIGH"\}'), 1, 'metric: one HIGH');

# the event on system_events
my ($out) = run_cmd(30, 'kcat', '-C', '-b', $ENV{INSITE_KAFKA_BOOTSTRAP}, '-t', 'system_events', '-o', 'beginning', '-e', '-q',
                    '-f', '%k\t%s\n');
my @ev = map { $json->decode((split /\t/, $_, 2)[1]) } grep { /\t/ && (split /\t/)[0] eq $mallory } split /\n/, $out;
my @high = grep { $_->{event_type} eq 'security_incident' && $_->{data}{severity} eq 'HIGH' } @ev;
is(scalar @high, 1, 'one HIGH security_incident event on system_events, keyed by the user') or diag($out);
is($high[0]{data}{kind}, 'excessive_access', 'its kind');
ok(!grep({ $_->{data}{user_id} ne $mallory } @ev), 'events name the user');
$n->stop;

done_testing();
