# The audit ring (docs/gdpr.md, "Round 5"): with fsync off or 1s a record
# is copied into <dir>/audit-<n>.ring before the response leaves and reaches
# the journal at the end of the event-loop turn.  Here the turn's flush is
# held back (INSITE_GDPR_TEST_HOLD_RING, a test-only switch read by the
# workers through `env`), so every answered request's record is in a ring
# and none in the journal when both workers are killed with -9: the
# respawned workers' recovery must append each of them, once, with the
# chain intact.  With fsync always there is no ring: records are in the
# journal before the response, whatever the switch says.
use strict;
use warnings;
use lib 't/lib';

use Cwd qw(getcwd);
use File::Temp ();
use JSON::PP ();
use POSIX ();
use Test::More;
use Time::HiRes qw(time sleep);

use Insite::Nginx;
use Insite::Services qw(run_cmd);

plan skip_all => 'TEST_NGINX_LOAD_MODULES not set (run under scripts/test.sh)'
    unless defined $ENV{TEST_NGINX_LOAD_MODULES};
my $auditd = getcwd() . '/build/bin/insite-auditd';
plan skip_all => "$auditd not built" unless -x $auditd;

my $json = JSON::PP->new->utf8;
my $tmp = File::Temp::tempdir('insite-gdpr-ring-XXXXXX', TMPDIR => 1, CLEANUP => 1);
chmod 0755, $tmp;

sub slurp { local (@ARGV, $/) = @_; my $d = <>; $d // '' }
sub records {
    my ($dir) = @_;
    map { $json->decode($_) } grep { length } map { split /\n/, slurp($_) } sort glob "$dir/audit-*.jsonl";
}
sub wait_for {
    my ($secs, $cond) = @_;
    my $deadline = time + $secs;
    while (time < $deadline) { return 1 if $cond->(); sleep 0.05 }
    return $cond->();
}
sub verify { my ($out, $rc) = run_cmd(20, $auditd, 'verify', @_); return ($rc, $out) }
sub nginx {
    my ($j, $fsync) = @_;
    return Insite::Nginx->new(
        main   => "env INSITE_GDPR_TEST_HOLD_RING=1;",
        http   => "    insite_gdpr_journal $j;\n    insite_gdpr_fsync $fsync;\n",
        server => <<'CONF');
        location /data { insite_gdpr_audit on; insite_gdpr_audit_user $http_x_user;
                         return 200 "$insite_request_id\n"; }
CONF
}
# clients x each requests in flight together; the request ids answered
sub load {
    my ($n, $clients, $each, $tag) = @_;
    my (@files, @pids);
    for my $c (1 .. $clients) {
        my $f = "$tmp/ids-$tag-$c";
        push @files, $f;
        my $pid = fork // die;
        if ($pid) { push @pids, $pid; next }
        open my $out, '>', $f or die;
        for my $i (1 .. $each) {
            my $r = $n->get("/data/item-$c-$i", headers => { 'X-User' => "u$c" });
            print $out "$r->{body}" if ($r->{status} // 0) == 200;
        }
        close $out;
        POSIX::_exit(0);
    }
    waitpid($_, 0) for @pids;
    return map { grep { length } split /\n/, slurp($_) } @files;
}

# ------------------------------------------------- fsync off: kill -9, recovery
{
    my $j = "$tmp/off";
    my $n = nginx($j, 'off');
    my @ids = load($n, 4, 15, 'a');
    is(scalar @ids, 60, 'every request answered');
    is(scalar(() = records($j)), 0, 'held: none of their records is in the journal yet');
    is(-s "$j/audit-$_.ring", 65536, "worker $_ has its ring file") for 0, 1;

    my @w = $n->workers;
    kill 'KILL', @w;
    ok(wait_for(30, sub { my @now = $n->workers;
                          @now == 2 && !grep { my $o = $_; grep { $_ == $o } @w } @now }),
       'both workers respawned');
    ok(wait_for(10, sub { records($j) >= 60 }), 'the successors appended the rings\' records');

    my %seen;
    $seen{$_->{request_id}}++ for records($j);
    is(scalar(grep { ($seen{$_} // 0) != 1 } @ids), 0,
       'every answered request id is in the journal exactly once')
        or diag(explain([ grep { ($seen{$_} // 0) != 1 } @ids ]));
    is(scalar(keys %seen), 60, 'and nothing else');

    my ($rc, $out) = verify($j);
    is($rc, 0, 'the chains verify') or diag($out);
    unlike($out, qr/chain \d+\.\d+/, 'the successors continued chains 0 and 1');

    my $log = $n->error_log;
    my $sum = 0;
    $sum += $1 while $log =~ /(\d+) records of chain "\d" \(seq \d+ to \d+\) recovered from "[^"]+\.ring"/g;
    is($sum, 60, 'the recoveries are logged with their counts');

    # a graceful stop writes what is held
    my @more = load($n, 2, 5, 'b');
    is(scalar @more, 10, 'the successors answer');
    $n->stop;
    %seen = ();
    $seen{$_->{request_id}}++ for records($j);
    is(scalar(grep { ($seen{$_} // 0) != 1 } @ids, @more), 0, 'a graceful stop writes the held records');
    ($rc, $out) = verify($j);
    is($rc, 0, 'the chains still verify') or diag($out);
    my @alerts = grep { /\[(alert|emerg|crit)\]/ && !/exited on signal 9/ } split /\n/, $log;
    is(scalar @alerts, 0, 'no alerts') or diag(join "\n", @alerts);
}

# ------------------------------------------------ fsync always: no ring at all
{
    my $j = "$tmp/always";
    my $n = nginx($j, 'always');
    my @ids = load($n, 2, 5, 'c');
    is(scalar @ids, 10, 'answered');
    is(scalar(() = records($j)), 10, 'fsync always: each record is in the journal before its response');
    my @w = $n->workers;
    kill 'KILL', @w;
    ok(wait_for(30, sub { my @now = $n->workers;
                          @now == 2 && !grep { my $o = $_; grep { $_ == $o } @w } @now }), 'respawned');
    is(scalar(() = records($j)), 10, 'nothing appended twice');
    my ($rc, $out) = verify($j);
    is($rc, 0, 'the chains verify') or diag($out);
    $n->stop;
}

done_testing();
