# systemd readiness and watchdog (Type=notify, WatchdogSec=): a worker
# started with $NOTIFY_SOCKET says READY=1 once it is up, pets the watchdog
# at half of $WATCHDOG_USEC from its loop, and says STOPPING=1 on SIGTERM.
# The socket is ours, as systemd's would be; no systemd is needed.

use strict;
use warnings;
use lib 't/lib';

use Cwd qw(getcwd);
use File::Temp ();
use IO::Select;
use Socket qw(AF_UNIX SOCK_DGRAM pack_sockaddr_un);
use Test::More;
use Time::HiRes qw(time);

use Insite::Services qw(free_port wait_port);

for my $v (qw(INSITE_REDIS_PORT INSITE_PG_DSN INSITE_KAFKA_BOOTSTRAP)) {
    plan skip_all => "$v not set (run under scripts/test.sh)" unless $ENV{$v};
}
my $root = getcwd();
my $bin = "$root/build/bin/insite-collector";
plan skip_all => "$bin not built" unless -x $bin;

my $tmp = File::Temp->newdir('insite-notify-XXXXXX', TMPDIR => 1);

# every datagram the worker sends within $secs, as one list of lines
sub listen_for {
    my ($sock, $secs, $until) = @_;
    my (@lines, $buf);
    my $sel = IO::Select->new($sock);
    my $end = time + $secs;
    while ((my $left = $end - time) > 0) {
        next unless $sel->can_read($left);
        defined recv($sock, $buf, 4096, 0) or last;
        push @lines, split /\n/, $buf;
        last if $until && grep { $_ eq $until } @lines;
    }
    return @lines;
}

sub start_worker {
    my ($name, %extra) = @_;
    my $path = "$tmp/$name.sock";
    socket(my $sock, AF_UNIX, SOCK_DGRAM, 0) or die "socket: $!";
    bind($sock, pack_sockaddr_un($path)) or die "bind $path: $!";
    my $port = free_port();
    my $pid = Insite::Services::spawn($bin, {
        NOTIFY_SOCKET => $path,
        INSITE_PROVIDER_FEED => 'simulated', INSITE_COLLECTOR_SYMBOLS => 'NTFY',
        INSITE_COLLECTOR_INTERVAL => '200ms', INSITE_COLLECTOR_HTTP_PORT => $port,
        INSITE_COLLECTOR_SOURCE_SERVICE => "notify$$",
        INSITE_KAFKA_SPOOL_DIR => "$tmp/spool-$name",
        INSITE_SOCIAL_RSS_ENABLED => 'false',
        %extra,
    }, "$tmp/$name.log");
    return ($sock, $pid, $port);
}

sub stop_worker {
    my ($pid) = @_;
    kill 'TERM', $pid;
    waitpid $pid, 0;
}

{
    my ($sock, $pid, $port) = start_worker('wd', WATCHDOG_USEC => 400_000);
    my @l = listen_for($sock, 30, 'READY=1');
    ok((grep { $_ eq 'READY=1' } @l), 'READY=1 once the worker is up')
        or diag(`tail -20 $tmp/wd.log`);
    ok(wait_port($port, 10), 'and its API answers');
    ok((grep { $_ eq "MAINPID=$pid" } @l), "MAINPID=$pid");
    my @w = grep { $_ eq 'WATCHDOG=1' } listen_for($sock, 2);
    cmp_ok(scalar @w, '>=', 3, 'WATCHDOG=1 at half of WatchdogSec (0.4 s): 3 or more in 2 s')
        or diag("got: @w");
    kill 'TERM', $pid;
    my @s = listen_for($sock, 10, 'STOPPING=1');
    ok((grep { $_ eq 'STOPPING=1' } @s), 'STOPPING=1 on SIGTERM');
    waitpid $pid, 0;
    is($? >> 8, 0, 'and a clean exit');
}

{
    my ($sock, $pid) = start_worker('nowd');
    my @l = listen_for($sock, 30, 'READY=1');
    ok((grep { $_ eq 'READY=1' } @l), 'without WATCHDOG_USEC: READY=1');
    my @w = grep { $_ eq 'WATCHDOG=1' } listen_for($sock, 1);
    is(scalar @w, 0, 'and no watchdog messages');
    stop_worker($pid);
}

done_testing();
