# insite-auditd: a journal shipped again after its positions were lost
# stays exactly once.  The shipper COPYs a batch straight into
# gdpr_audit_trail; when some of its rows are there already (the COPY fails
# with unique_violation) it rolls back to a savepoint and ships the batch
# through the stage table and INSERT ... ON CONFLICT DO NOTHING
# (workers/auditd/ship.c, ship_rows).  Here: ship 400 records, stop,
# delete the source's positions, serve 10 more, restart: the 10 new rows
# arrive, the 400 old ones are not doubled, nothing is reported as an
# error.  400 rows are more than the 256 KB after which a batch starts
# streaming into its COPY while the rest is read, so the fallback also
# runs after a COPY that had already received rows.
#
# Needs INSITE_PG_DSN.  INSITE_AUDITD_BIN picks the binary.
use strict;
use warnings;
use lib 't/lib';

use Cwd qw(getcwd);
use File::Temp ();
use Test::More;
use Time::HiRes qw(time sleep);

use Insite::Nginx;
use Insite::Services qw(free_port wait_port run_cmd);

for my $v (qw(TEST_NGINX_LOAD_MODULES INSITE_PG_DSN)) {
    plan skip_all => "$v not set (run under scripts/test.sh or source build/run/services.env)"
        unless $ENV{$v};
}
my $root = getcwd();
my $bin = $ENV{INSITE_AUDITD_BIN} // "$root/build/bin/insite-auditd";
$bin = "$root/$bin" unless $bin =~ m{^/};
plan skip_all => "$bin not built" unless -x $bin;

my $tmp = File::Temp::tempdir('insite-auditd-reship-XXXXXX', TMPDIR => 1, CLEANUP => 1);
chmod 0755, $tmp;
my $tag = "reship$$-" . int(time);
my $source = "edge-$tag";
my $dsn = $ENV{INSITE_PG_DSN};

sub slurp { return "" unless -e $_[0]; local (@ARGV, $/) = @_; my $d = <>; $d // "" }
sub wait_for {
    my ($secs, $cond) = @_;
    my $deadline = time + $secs;
    while (time < $deadline) { return 1 if $cond->(); sleep 0.1 }
    return $cond->();
}
sub psql {
    my ($o, $r) = run_cmd(20, 'psql', $dsn, '-X', '-qtA', '-v', 'ON_ERROR_STOP=1', '-c', $_[0]);
    die "psql: $o" if $r;
    chomp $o;
    $o;
}

my $j = "$tmp/journal";
Test::Nginx::Util::spew("$tmp/ok.txt", "ok\n");
my $nginx = Insite::Nginx->new(http => "    insite_gdpr_journal $j;\n", server => <<"CONF");
        location /data/ { insite_gdpr_audit on; insite_gdpr_audit_user \$http_x_user;
                          insite_gdpr_data_type "$tag"; root $tmp; rewrite ^ /ok.txt break; }
CONF

my $api = free_port();
my %env = (
    INSITE_PG_DSN => $dsn, INSITE_PG_MIGRATIONS_DIR => "$root/workers/migrations",
    INSITE_AUDITD_JOURNAL_DIR => $j, INSITE_AUDITD_SOURCE => $source,
    INSITE_AUDITD_HTTP_PORT => $api, INSITE_AUDITD_POLL_INTERVAL => '50ms',
    INSITE_AUDITD_BATCH_SIZE => 1000, INSITE_AUDITD_DIGEST_DIR => "$tmp/digests",
);
my $log = "$tmp/auditd.log";
my $pid;
sub start {
    $pid = Insite::Services::spawn($bin, \%env, $log);
    ok(wait_port($api, 15), "insite-auditd API listens (pid $pid)") or diag(slurp($log));
}
sub stop {
    kill 'TERM', $pid;
    waitpid($pid, 0);
    is($? >> 8, 0, 'the shipper exits cleanly on SIGTERM');
    undef $pid;
}
END { kill 'KILL', $pid if $pid }

my $N = 400;
my $rows = sub { psql("SELECT count(*) FROM gdpr_audit_trail WHERE source = '$source'") };
sub requests {
    my ($from, $to) = @_;
    for my $i ($from .. $to) {
        my $r = $nginx->get("/data/x?i=$i", headers => { 'X-User' => "u$i" });
        die "request $i: $r->{status}\n" unless ($r->{status} // 0) == 200;
    }
}

requests(1, $N);
start();
ok(wait_for(60, sub { (eval { $rows->() } // 0) >= $N }), "$N rows shipped") or diag(slurp($log));
unlike(slurp($log), qr/rows already in gdpr_audit_trail/, 'first shipping: straight COPY');
stop();

# the positions are lost: the whole journal will be read again
psql("DELETE FROM gdpr_audit_positions WHERE source = '$source'");
requests($N + 1, $N + 10);
my $from = length slurp($log);
start();
ok(wait_for(60, sub { $rows->() >= $N + 10 }), 'the 10 new rows arrive') or diag(slurp($log));
ok(wait_for(15, sub { psql("SELECT count(*) FROM gdpr_audit_positions WHERE source = '$source'") > 0 }),
   'positions stored again');
sleep 1;    # ~20 more passes at 50ms
stop();
my $after = substr(slurp($log), $from);
like($after, qr/rows already in gdpr_audit_trail: this batch of \d+ goes through INSERT \.\.\. ON CONFLICT DO NOTHING/,
     'the batch with shipped rows took the idempotent path');
unlike($after, qr/postgresql: .*retrying/, 'no PostgreSQL error on the way');
is($rows->(), $N + 10, "exactly " . ($N + 10) . " rows: none of the $N doubled");
is(psql("SELECT count(DISTINCT id) FROM gdpr_audit_trail WHERE source = '$source'"), $N + 10,
   'distinct record ids');
is(psql("SELECT count(*) FROM gdpr_audit_trail WHERE source = '$source' AND path = '/data/x'"), $N + 10,
   'every row typed, as the journal says');
is(psql("SELECT count(*) FROM security_incidents WHERE source = '$source'"), 0, 'no chain incidents');
unlike(slurp($log), qr/AddressSanitizer|runtime error:|LeakSanitizer/, 'no sanitizer reports');
$nginx->check_log;
$nginx->stop;
done_testing();
