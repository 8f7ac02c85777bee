# The Redis adapter under traffic: Redis killed, restarted and frozen while
# clients keep asking /healthz (a PING through each worker's connection).
# Every request must be answered promptly, with the truth about Redis, and
# both workers must come back by themselves.
use strict;
use warnings;
use lib 't/lib';
use Test::More;
use Time::HiRes qw(time sleep);
use Insite::Services qw(start_redis);
use Insite::Nginx;

my $redis = start_redis();
my $port = $redis->port;

my $ngx = Insite::Nginx->new(
    http   => "    insite_redis 127.0.0.1:$port connect_timeout=500ms command_timeout=200ms;",
    server => "        location = /healthz { insite_healthz; }\n"
            . "        location = /metrics { insite_metrics; }",
);

# Sends requests for $secs seconds; returns the states seen and the slowest
# answer. A request that errs (no answer, bad status, bad body) is recorded.
sub traffic {
    my ($secs) = @_;
    my (%states, @errors);
    my $slowest = 0;
    my $end = time + $secs;
    while (time < $end) {
        my $res = $ngx->get('/healthz', timeout => 3);
        $slowest = $res->{elapsed} if ($res->{elapsed} // 99) > $slowest;
        # 200 while connected, 503 ("degraded") otherwise
        if ($res->{error}
            || $res->{body} !~ /"redis":\{"configured":true,"state":"([a-z_ ]+)"/
            || ($res->{status} // 0) != ($1 eq 'connected' ? 200 : 503))
        {
            push @errors, $res->{error} // "status $res->{status}: $res->{body}";
            next;
        }
        $states{$1}++;
        sleep 0.01;
    }
    return (\%states, $slowest, \@errors);
}

sub wait_connected {
    my ($secs) = @_;
    my $end = time + $secs;
    my $streak = 0;
    while (time < $end) {
        my $res = $ngx->get('/healthz', timeout => 3);
        $streak = ($res->{body} // '') =~ /"state":"connected","ping_ms":\d+/
                ? $streak + 1 : 0;
        return 1 if $streak >= 20;       # both workers, many times over
        sleep 0.02;
    }
    return 0;
}

ok(wait_connected(5), 'both workers connect at start');

# 1. Redis crashes mid-traffic
my $pid = fork // die;
if ($pid == 0) { sleep 0.5; $redis->kill9; exit 0 }
my ($states, $slowest, $errors) = traffic(2);
waitpid $pid, 0;
is(scalar(@$errors), 0, 'every request answered while Redis died')
    or diag explain $errors;
ok($states->{down}, 'requests after the crash say Redis is down')
    or diag explain $states;
cmp_ok($slowest, '<', 1.5, 'no request waited on the dead Redis');

# 2. Redis comes back: the workers reconnect on their own
$redis->restart;
ok(wait_connected(8), 'both workers reconnect after the restart');

# 3. Redis freezes (SIGSTOP): commands time out instead of hanging
$redis->freeze;
($states, $slowest, $errors) = traffic(1.5);
$redis->thaw;
is(scalar(@$errors), 0, 'every request answered while Redis was frozen')
    or diag explain $errors;
ok($states->{down} || $states->{connecting}, 'frozen Redis reported as not connected')
    or diag explain $states;
cmp_ok($slowest, '<', 1.5, 'a frozen Redis stalls no request beyond the timeouts');
ok(wait_connected(8), 'both workers recover after the freeze');

my $log = $ngx->error_log;
like($log, qr/insite redis 127\.0\.0\.1:$port \(commands\): connection lost: Server closed the connection; reconnecting now/,
     'the crash is logged with its cause');
# the first attempt meets a Redis still going down (reset) or gone (refused)
like($log, qr/\(commands\): connect failed: (?:Connection refused|Connection reset by peer); reconnecting in 1000ms/,
     'the first failed attempt starts the backoff');
like($log, qr/\(commands\): connection lost: command timed out; reconnecting now/,
     'the freeze is logged as a command timeout');
like($log, qr/\(commands\): reconnected/, 'the recovery is logged');

my $m = $ngx->get('/metrics')->{body};
my ($timeouts) = $m =~ /^insite_redis_command_timeouts_total (\d+)$/m;
my ($reconnects) = $m =~ /^insite_redis_reconnects_total (\d+)$/m;
my ($connected) = $m =~ /^insite_redis_connected (\d+)$/m;
cmp_ok($timeouts, '>=', 1, 'timeouts counted');
cmp_ok($reconnects, '>=', 2, 'reconnects counted');
is($connected, 2, 'both workers connected in the end');

$ngx->stop;
$ngx->check_log;
unlike($ngx->error_log, qr/open socket .* left in connection/, 'no socket left at exit');

done_testing;
