# insite-auditd's API as an attacker tries it: a user reads only their own
# audit trail (user_id=<other> -> 403, no identity -> 401); another user's
# and everyone's need the gdpr:admin scope; the shipped rows carry the
# data subject; strict integers and no PostgreSQL text in answers; 300 idle
# sockets do not starve the API.
#
# Needs INSITE_PG_DSN (scripts/test.sh exports it).
use strict;
use warnings;
use lib 't/lib';

use Cwd qw(getcwd);
use File::Temp ();
use IO::Socket::INET;
use JSON::PP ();
use Test::More;
use Time::HiRes qw(time sleep);

use Insite::Nginx;
use Insite::Services qw(free_port wait_port http_request run_cmd);

for my $v (qw(TEST_NGINX_LOAD_MODULES INSITE_PG_DSN)) {
    plan skip_all => "$v not set (run under scripts/test.sh)" unless $ENV{$v};
}
my $root = getcwd();
my $bin = $ENV{INSITE_AUDITD_BIN} // "$root/build/bin/insite-auditd";
$bin = "$root/$bin" unless $bin =~ m{^/};
plan skip_all => "$bin not built" unless -x $bin;

my $json = JSON::PP->new->utf8;
my $tmp = File::Temp::tempdir('insite-auditd-authz-XXXXXX', TMPDIR => 1, CLEANUP => 1);
chmod 0755, $tmp;
my ($alice, $bob, $ops) = ("alice$$", "bob$$", "ops$$");
sub slurp { local (@ARGV, $/) = @_; my $d = <>; $d // '' }
sub psql {
    my ($o, $r) = run_cmd(20, 'psql', $ENV{INSITE_PG_DSN}, '-X', '-qtA', '-c', $_[0]);
    die "psql: $o" if $r;
    chomp $o;
    $o;
}

# ---- records: alice reads her portfolio, the operator reads bob's trail
my $j = "$tmp/journal";
my $n = Insite::Nginx->new(http => "    insite_gdpr_journal $j;\n", server => <<'CONF');
        insite_gdpr_audit_user $http_x_user;
        location /api/v1/portfolio { insite_gdpr_audit on; insite_gdpr_data_type portfolio; return 200; }
        location /api/v1/gdpr/ { insite_gdpr_audit on; insite_gdpr_data_type audit_trail;
                                 insite_gdpr_data_subject $arg_user_id; return 200; }
CONF
$n->get('/api/v1/portfolio', headers => { 'X-User' => $alice }) for 1 .. 3;
$n->get('/api/v1/portfolio', headers => { 'X-User' => $bob }) for 1 .. 2;
$n->get("/api/v1/gdpr/audit-trail?user_id=$bob", headers => { 'X-User' => $ops });
$n->stop;

# ---- ship them
my $api = free_port();
my $log = "$tmp/auditd.log";
my $pid = Insite::Services::spawn($bin, {
    INSITE_PG_DSN => $ENV{INSITE_PG_DSN}, INSITE_PG_MIGRATIONS_DIR => "$root/workers/migrations",
    INSITE_AUDITD_JOURNAL_DIR => $j, INSITE_AUDITD_SOURCE => "authz-$$",
    INSITE_AUDITD_HTTP_PORT => $api, INSITE_AUDITD_POLL_INTERVAL => '50ms',
    INSITE_AUDITD_KAFKA => 'false',
}, $log);
END { if ($pid) { kill 'TERM', $pid; waitpid $pid, 0 } }
ok(wait_port($api, 15), 'insite-auditd listens') or diag(slurp($log));
my $deadline = time + 20;
sleep 0.1 until psql("SELECT count(*) FROM gdpr_audit_trail WHERE source = 'authz-$$'") == 6 || time > $deadline;
is(psql("SELECT count(*) FROM gdpr_audit_trail WHERE source = 'authz-$$'"), 6, 'six rows shipped');
is(psql("SELECT user_id || ' ' || data_subject FROM gdpr_audit_trail WHERE source = 'authz-$$' AND data_type = 'audit_trail'"),
   "$ops $bob", 'the shipped row names the data subject');
is(psql("SELECT count(*) FROM gdpr_audit_trail WHERE source = 'authz-$$' AND data_subject = user_id"), 5,
   'data_subject defaults to the user');

# ---- who may read what
sub get {
    my ($path, %h) = @_;
    my $r = http_request($api, 'GET', $path, headers => \%h);
    return ($r->{status} // 0, eval { $json->decode($r->{body}) } // { raw => $r->{body} });
}
my @me = ('X-User-Id' => $alice, 'X-User-Scopes' => 'profile portfolio:read');
my @op = ('X-User-Id' => $ops, 'X-User-Scopes' => 'openid gdpr:admin');
my ($st, $b) = get('/api/v1/gdpr/audit-trail');
is($st, 401, 'no identity: 401');
is($b->{error}, 'unauthorized', '... JSON reason');
($st, $b) = get('/api/v1/gdpr/audit-trail', @me);
is($st, 200, 'a user reads their own trail');
is(scalar(@{ $b->{records} }), 3, '... their three records');
is(scalar(grep { $_->{user_id} ne $alice } @{ $b->{records} }), 0, '... and nobody else\'s');
($st, $b) = get("/api/v1/gdpr/audit-trail?user_id=$bob", @me);
is($st, 403, "user A cannot read B's trail");
is($b->{error}, 'insufficient_scope', '... insufficient_scope');
($st, $b) = get("/api/v1/gdpr/audit-trail?user_id=$bob", 'X-User-Id' => $alice, 'X-User-Scopes' => 'gdpr:admin:x gdpr');
is($st, 403, 'a scope that only looks like gdpr:admin: 403');
($st, $b) = get("/api/v1/gdpr/suspicious-activity?user_id=$bob", @me);
is($st, 403, "suspicious-activity of another user: 403");
($st, $b) = get('/api/v1/gdpr/suspicious-activity', @me);
is($st, 200, 'suspicious-activity without user_id: the caller only');
is_deeply([map { $_->{user_id} } @{ $b->{users} }], [$alice], '... only the caller listed');
($st, $b) = get("/api/v1/gdpr/audit-trail?user_id=$bob", @op);
is($st, 200, "an operator reads B's trail");
is(scalar(@{ $b->{records} }), 2, '... two records');
is($b->{records}[0]{data_subject}, $bob, '... with data_subject in the answer');
($st, $b) = get('/api/v1/gdpr/audit-trail?limit=1000', @op);
my %users = map { ($_->{user_id} // '') => 1 } @{ $b->{records} };
ok($st == 200 && $users{$alice} && $users{$bob} && $users{$ops}, 'an operator reads everyone\'s');

# ---- strict input, our own reasons
for my $l ('1abc', '', ' 5', '0x10', '5.0', '99999999999999999999', '0', '1001') {
    ($st, $b) = get("/api/v1/gdpr/audit-trail?limit=$l", @me);
    ok($st == 400 && $b->{message} eq 'limit must be an integer from 1 to 1000', "limit=$l: 400 with a reason")
        or diag explain [$st, $b];
}
($st, $b) = get('/api/v1/gdpr/audit-trail?limit=2', @me);
is(scalar(@{ $b->{records} }), 2, 'limit=2: two');
($st, $b) = get('/api/v1/gdpr/audit-trail?start_date=yesterday-ish', @me);
is($st, 400, 'a bad date: 400');
unlike($json->encode($b), qr/invalid input syntax|timestamp with time zone|ERROR:/,
       '... PostgreSQL\'s text stays out of the answer');
like(slurp($log), qr/api: audit trail: invalid input syntax/, '... and is logged');

# ---- 300 idle sockets from one local address do not starve the API
my @idle;
for (1 .. 300) {
    my $s = IO::Socket::INET->new(PeerAddr => '127.0.0.1', PeerPort => $api, LocalAddr => '127.0.0.2',
                                  Proto => 'tcp', Timeout => 2) or last;
    push @idle, $s;
}
is(scalar @idle, 300, '300 idle connections opened');
($st, $b) = get('/api/v1/gdpr/audit-trail?limit=1', @me);
is($st, 200, 'a request from 127.0.0.1 is still answered');
# the idle ones are closed by the server after a few seconds
my $t0 = time;
my $closed = 0;
my $rin = '';
vec($rin, fileno($idle[0]), 1) = 1;
if (select(my $rout = $rin, undef, undef, 20)) {
    $closed = !sysread($idle[0], my $buf, 1);
}
ok($closed, sprintf('an idle connection is closed by the server (after %.1fs)', time - $t0));
close $_ for @idle;
unlike(slurp($log), qr/AddressSanitizer|runtime error:/, 'no sanitizer reports');
done_testing();
