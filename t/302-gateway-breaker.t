# ngx_http_insite_gateway_module: the circuit breaker, shared by both
# workers, through its full timed cycle against a real upstream (a second
# nginx we stop and start), a dead port, and a failure ratio.
use strict;
use warnings;
use lib 't/lib';
use Test::More;
use File::Temp qw(tempdir);
use Time::HiRes qw(time sleep);
use Insite::Services qw(free_port http_request);
use Insite::Nginx;

my $files = tempdir('insite-gw-XXXXXX', TMPDIR => 1, CLEANUP => 1);
open my $fh, '>', "$files/slow" or die $!;
print $fh 'x' x 24000;
close $fh;

my $backend = Insite::Nginx->new(server => <<"SERVER");
        location / { return 200 "backend ok\\n"; }
        location /fail { return 500 "backend failed\\n"; }
        location /slow { root $files; limit_rate 12k; }
SERVER
my $bport = $backend->port;

# the gateway listens with reuseport as well, so that the kernel spreads
# connections over both workers and every test below meets both
my $gport = free_port();
my $ngx = Insite::Nginx->new(
    http => <<"HTTP",
    server {
        listen 127.0.0.1:$gport reuseport;
        add_header X-Worker \$pid always;

        location /svc/ {
            insite_gateway_service stocks;
            insite_gateway_breaker failures=3 window=2s recovery=1s half_open=2;
            proxy_pass http://127.0.0.1:$bport/;
        }
        location /dead {
            insite_gateway_service collector;
            insite_gateway_breaker failures=5 window=30s recovery=60s half_open=3;
            proxy_pass http://127.0.0.1:1;
        }
        location /mixed/ {
            insite_gateway_service analytics;
            insite_gateway_breaker failures=100 ratio=0.5 min_requests=4 window=10s recovery=60s;
            proxy_pass http://127.0.0.1:$bport/;
        }
        location /timeouts-only/ {
            insite_gateway_service gdpr;
            insite_gateway_breaker failures=1 window=10s recovery=60s fail_on=timeout;
            proxy_pass http://127.0.0.1:$bport/;
        }
        location = /metrics { insite_metrics; }
    }
HTTP
);

sub get { return http_request($gport, 'GET', $_[0], timeout => 10) }

# 1. healthy
is(get('/svc/')->{status}, 200, 'closed: requests reach the service') for 1 .. 3;

# 2. the service dies: failures=3 opens the breaker
$backend->stop;
my @seen;
for (1 .. 6) {
    push @seen, get('/svc/')->{status};
    sleep 0.05;
}
is_deeply(\@seen, [502, 502, 502, 503, 503, 503],
          'three failures (502), then the breaker answers 503') or diag "@seen";

# 3. open: 503 at once on both workers, JSON, Retry-After
# (at least 20 requests, more until both workers have answered, while the
# 1 s recovery is still far off)
my (%workers, @bad);
my $open_since = time;
for (1 .. 200) {
    last if $_ > 20 && (keys %workers == 2 || time - $open_since > 0.5);
    my $r = get('/svc/');
    $workers{ $r->{headers}{'x-worker'} // '?' }++;
    push @bad, $r->{status} if $r->{status} != 503;
    if ($_ == 1) {
        is($r->{headers}{'retry-after'}, 1, 'Retry-After: the recovery left, at least 1 s');
        like($r->{body}, qr/^\{"error":"service_unavailable","message":"service \\"stocks\\" is unavailable","request_id":"[0-9a-f]{32}","retry_after":1\}$/,
             'the one error shape');
        is($r->{headers}{'content-type'}, 'application/json', 'JSON');
    }
}
is(scalar @bad, 0, 'every request refused while open') or diag "@bad";
is(scalar(keys %workers), 2, 'both workers see the open breaker') or diag explain \%workers;

# 4. recovery elapses with the service still dead: the probe fails, reopens
sleep 1.1;
is(get('/svc/')->{status}, 502, 'half-open: one probe goes through, and fails');
is(get('/svc/')->{status}, 503, 'open again after the failed probe');

# 5. the service is back: probes one at a time, closes after 2 successes
$backend->start;
sleep 1.1;
my $pid = fork // die;
if ($pid == 0) {
    my $r = get('/svc/slow');      # ~2 s body: a probe in flight
    exit($r->{status} == 200 && length($r->{body}) == 24000 ? 0 : 1);
}
sleep 0.4;
my $r = get('/svc/');
is($r->{status}, 503, 'half-open: a second request waits while a probe is out');
is($r->{headers}{'retry-after'}, 1, 'told to retry in 1 s');
waitpid $pid, 0;
is($?, 0, 'the slow probe succeeded');
is(get('/svc/')->{status}, 200, 'second probe succeeds: closed');
# which worker accepts a new connection is the kernel's choice: one worker
# can take ten in a row (seen in CI), so ask until both have answered
%workers = ();
for (1 .. 200) {
    $r = get('/svc/');
    $workers{ $r->{headers}{'x-worker'} // '?' }++ if $r->{status} == 200;
    last if $_ >= 10 && keys %workers == 2;
    select undef, undef, undef, 0.01;
}
is(scalar(keys %workers), 2, 'closed again on both workers') or diag explain \%workers;

# 6. the platform's bar: a dead service cut off in under 30 s with the
# defaults of the plan (failures=5, window=30s)
my $t0 = time;
my $cut;
while (time - $t0 < 30) {
    if (get('/dead')->{status} == 503) { $cut = time - $t0; last }
    sleep 0.05;
}
ok(defined $cut && $cut < 30, sprintf 'dead service cut off after %.2f s', $cut // -1);

# 7. ratio: 2 of 4 requests failed (5xx from the upstream) opens it
is(get('/mixed/')->{status}, 200, 'ratio: ok');
is(get('/mixed/fail')->{status}, 500, "ratio: the upstream's own 500 passes through");
is(get('/mixed/')->{status}, 200, 'ratio: ok (1 of 3 failed)');
sleep 0.05;
is(get('/mixed/fail')->{status}, 500, 'ratio: 2 of 4 failed');
sleep 0.05;
is(get('/mixed/')->{status}, 503, 'ratio >= 0.5 over min_requests: open');

# 8. fail_on=timeout: 5xx are not failures for this service
is(get('/timeouts-only/fail')->{status}, 500, 'fail_on=timeout: 500') for 1 .. 3;
is(get('/timeouts-only/')->{status}, 200, 'still closed');

# 9. every transition logged once, and counted
my $m = get('/metrics')->{body};
$ngx->stop;
$backend->stop;
my $log = $ngx->error_log;
my %count;
$count{$1}++ while $log =~ /service "stocks" circuit breaker (\w+ -> \w+)/g;
is_deeply(\%count, { 'CLOSED -> OPEN' => 1, 'OPEN -> HALF_OPEN' => 2,
                     'HALF_OPEN -> OPEN' => 1, 'HALF_OPEN -> CLOSED' => 1 },
          'each transition logged exactly once') or diag explain \%count;
like($log, qr/\[warn\].*service "stocks" circuit breaker CLOSED -> OPEN \(3 failures in 2000ms\), request_id: [0-9a-f]{32}/,
     'opening logged at warn with its reason and request id');
like($log, qr/service "analytics" circuit breaker CLOSED -> OPEN \(2 of 4 requests failed in 10000ms\)/,
     'ratio opening logged');
like($m, qr/^insite_gateway_breaker_transitions_total\{service="stocks",to="open"\} 2$/m, 'opened twice');
like($m, qr/^insite_gateway_breaker_transitions_total\{service="stocks",to="closed"\} 1$/m, 'closed once');
like($m, qr/^insite_gateway_breaker_state\{service="stocks"\} 0$/m, 'state gauge: closed');
like($m, qr/^insite_gateway_breaker_state\{service="collector"\} 1$/m, 'state gauge: open');
like($m, qr/^insite_gateway_requests_total\{service="stocks",class="5xx"\} [1-9]\d*$/m, 'requests by class');
like($m, qr/^insite_gateway_request_duration_seconds_count\{service="stocks"\} [1-9]\d*$/m, 'latency histogram');
like($m, qr/^insite_gateway_breaker_rejected_total\{service="stocks"\} [1-9]\d*$/m, 'rejections counted');
$ngx->check_log;

done_testing;
