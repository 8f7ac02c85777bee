# ngx_http_insite_gateway_module: the circuit breaker's counts stay exact
# when both workers count at once.  A closed breaker counts successes
# without the zone's mutex (an atomic add on its window bucket, see
# ngx_insite_gateway_breaker.c); this drives 200 successes from 20
# concurrent clients over both workers, then failures one by one, and
# checks that a ratio=0.5 breaker opens at exactly the 200th failure (every
# success counted, none twice), and that after it closes again the window
# starts empty (buckets of the earlier generation no longer count: the
# recovery is longer than a bucket, window/20, so the earlier counts sit in
# buckets other than the one the next failure resets).
#
# Each step waits, with a deadline, until the request's log phase (where
# the outcome is counted) has run: the requests_total metric is counted
# there right after the breaker's outcome.
use strict;
use warnings;
use lib 't/lib';
use Test::More;
use File::Temp qw(tempfile);
use Time::HiRes qw(time sleep);
use Insite::Services qw(free_port http_request);
use Insite::Nginx;

my $S = 200;             # successes, from 20 clients at once
my $CLIENTS = 20;

my $backend = Insite::Nginx->new(server => <<"SERVER");
        location /ok { return 200 "ok\\n"; }
        location /fail { return 500 "failed\\n"; }
SERVER
my $bport = $backend->port;

my $gport = free_port();
my $ngx = Insite::Nginx->new(
    http => <<"HTTP",
    server {
        listen 127.0.0.1:$gport reuseport;
        add_header X-Worker \$pid always;

        location /svc/ {
            insite_gateway_service quotes;
            insite_gateway_breaker failures=100000 ratio=0.5 min_requests=2
                                   window=120s recovery=7s half_open=1;
            proxy_pass http://127.0.0.1:$bport/;
        }
        location = /metrics { insite_metrics; }
    }
HTTP
);

sub get { return http_request($gport, 'GET', $_[0], timeout => 10) }

sub counted {
    my ($class) = @_;
    my $m = get('/metrics')->{body} // '';
    return $m =~ /^insite_gateway_requests_total\{service="quotes",class="$class"\} (\d+)$/m ? $1 : 0;
}

# waits until the log phase counted $n requests of $class
sub wait_counted {
    my ($class, $n) = @_;
    my $deadline = time + 30;
    my $got;
    while (($got = counted($class)) < $n && time < $deadline) {
        sleep 0.02;
    }
    return $got;
}

# 1. 200 successes, 20 clients at once, over both workers
my ($fh, $file) = tempfile('insite-gw-330-XXXXXX', TMPDIR => 1, UNLINK => 1);
close $fh;
my @kids;
for my $c (1 .. $CLIENTS) {
    my $pid = fork // die "fork: $!";
    if ($pid == 0) {
        open my $out, '>>', $file or exit 2;
        for (1 .. $S / $CLIENTS) {
            my $r = get('/svc/ok');
            syswrite $out, ($r->{status} // 0) . ' ' . ($r->{headers}{'x-worker'} // '?') . "\n";
        }
        exit 0;
    }
    push @kids, $pid;
}
waitpid $_, 0 for @kids;
open $fh, '<', $file or die $!;
my (%status, %workers);
while (<$fh>) {
    my ($st, $w) = split;
    $status{$st}++;
    $workers{$w}++;
}
close $fh;
is_deeply(\%status, { 200 => $S }, "$S concurrent requests answered 200") or diag explain \%status;
is(scalar(keys %workers), 2, 'both workers counted successes') or diag explain \%workers;
is(wait_counted('2xx', $S), $S, 'every success reached the log phase');

# 2. failures one at a time: ratio 0.5 opens at exactly failure number $S
my ($failures, $first) = (0, undef);
while ($failures <= $S + 5) {
    my $st = get('/svc/fail')->{status};
    if ($st != 500) { $first = $st; last }
    $failures++;
    wait_counted('5xx', $failures);
}
is($first, 503, 'the breaker opened');
is($failures, $S, "it opened at failure $S of " . 2 * $S . ' requests: no success lost or counted twice');

# 3. recovery: one probe succeeds and closes it
my $deadline = time + 30;
my $st = 503;
while ($st == 503 && time < $deadline) {
    sleep 0.1;
    $st = get('/svc/ok')->{status};
}
is($st, 200, 'the probe after the recovery succeeded');
wait_counted('2xx', $S + 1);

# 4. closed again, from an empty window: one failure is 1 of 1 request,
# under min_requests; the earlier generation's 2 x $S requests do not count
is(get('/svc/fail')->{status}, 500, 'closed: the first failure passes');
wait_counted('5xx', $S + 1);
is(get('/svc/fail')->{status}, 500, 'one failure did not open it (the window restarted)');
wait_counted('5xx', $S + 2);
is(get('/svc/ok')->{status}, 503, '2 of 2 failed: open');

$ngx->stop;
$backend->stop;
my $log = $ngx->error_log;
my %count;
$count{$1}++ while $log =~ /service "quotes" circuit breaker (\w+ -> \w+)/g;
is_deeply(\%count, { 'CLOSED -> OPEN' => 2, 'OPEN -> HALF_OPEN' => 1,
                     'HALF_OPEN -> CLOSED' => 1 },
          'each transition logged once') or diag explain \%count;
like($log, qr/service "quotes" circuit breaker CLOSED -> OPEN \($S of ${\(2 * $S)} requests failed in 120000ms\)/,
     'the opening counted every request of both workers');
like($log, qr/service "quotes" circuit breaker CLOSED -> OPEN \(2 of 2 requests failed in 120000ms\)/,
     'the second opening counted only its own generation');
$ngx->check_log;

done_testing;
