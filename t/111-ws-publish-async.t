# insite_ws_publish with "Prefer: respond-async" (RFC 7240, issue 18 item
# 4): 202 {"channel","accepted":true} and Preference-Applied as soon as the
# script call is queued, so the requests pipelined on one HTTP/1.1
# connection are all taken in one loop turn; their messages keep the order
# of the requests (seq order = request order); the body is still checked
# before the answer (400); a call that fails after the 202 is logged and
# counted, never silent; without the preference, or with
# insite_ws_publish_replicas, the answer is the 201 with the seq as before.
use strict;
use warnings;
use lib 't/lib';
use Test::More;
use IO::Socket::INET;
use Time::HiRes ();
use Insite::Services qw(start_redis);
use Insite::Nginx;
use Insite::WS;

my $redis = start_redis();
my $rport = $redis->port;

my $ngx = Insite::Nginx->new(
    http   => "    insite_redis 127.0.0.1:$rport;\n"
            . "    insite_ws_shutdown_spread 100ms;",
    server => "        location /ws { insite_ws; }\n"
            . "        location /pub { insite_ws_publish; }\n"
            . "        location /durable { insite_ws_publish; insite_ws_publish_replicas 1 50ms; }\n"
            . "        location /status { insite_ws_status; }\n"
            . "        location = /metrics { insite_metrics; }",
);
my $port = $ngx->port;
ok(Insite::WS->wait_ready($port), 'Redis connected in both workers');

END {
    diag "error log:\n" . Insite::WS->log_tail($ngx, 60)
        if $ngx && $ngx->pid && !Test::More->builder->is_passing;
}

my $json = Insite::WS->json;

sub pub {
    my ($channel, $body, %o) = @_;
    $body = $json->encode($body) if ref $body;
    my @h = ('Content-Type' => 'application/json');
    push @h, map { ('Prefer' => $_) } ref $o{prefer} ? @{ $o{prefer} } : $o{prefer}
        if defined $o{prefer};
    my $res = Insite::Services::http_request(
        $port, 'POST', ($o{path} // '/pub') . "?channel=$channel",
        body => $body, headers => \@h, timeout => 5);
    $res->{json} = eval { $json->decode($res->{body}) }
        if ($res->{body} // '') =~ /^\{/;
    return $res;
}

sub metric {
    my ($name) = @_;
    my $res = Insite::Services::http_request($port, 'GET', '/metrics');
    return ($res->{body} // '') =~ /^\Q$name\E (\d+)$/m ? $1 : undef;
}

# --- one accepted publish ---------------------------------------------------
my $ws = Insite::WS->connect($port);
is($ws->subscribe(['async:one'])->{type}, 'subscribed', 'a subscriber of async:one');

my $res = pub('async:one', { type => 'quote', data => { p => 1.5 } }, prefer => 'respond-async');
is($res->{status}, 202, 'Prefer: respond-async: 202');
is_deeply($res->{json}, { channel => 'async:one', accepted => JSON::PP::true() },
          '... {"channel","accepted":true}') or diag $res->{body};
is($res->{headers}{'preference-applied'}, 'respond-async', '... Preference-Applied: respond-async');
my $m = $ws->recv_json(timeout => 5);
is($m && $m->{type}, 'quote', 'the subscriber got the message');
is($m && $m->{seq}, 1, '... as seq 1');
is($m && $m->{data} && $m->{data}{p}, 1.5, '... with its data');

# --- the preference among others, and near misses -----------------------------
$res = pub('async:one', { data => 2 }, prefer => 'wait=10, respond-async;x=1');
is($res->{status}, 202, '"wait=10, respond-async;x=1": 202');
$res = pub('async:one', { data => 3 }, prefer => 'return=minimal');
is($res->{status}, 201, '"return=minimal": 201');
is($res->{json} && $res->{json}{seq}, 3, '... with the seq (3: the accepted one was published)');
$res = pub('async:one', { data => 4 }, prefer => 'respond-asynchronously');
is($res->{status}, 201, '"respond-asynchronously" is another token: 201');
$res = pub('async:one', { data => 5 }, prefer => 'x="a, respond-async"');
is($res->{status}, 201, 'respond-async inside a quoted value is not a preference: 201');
$res = pub('async:one', { data => 6 });
is($res->{status}, 201, 'no Prefer: 201');
is($res->{json} && $res->{json}{seq}, 6, '... seq 6');
$res = pub('async:one', { data => 7 }, prefer => ['return=minimal', 'respond-async']);
is($res->{status}, 202, 'two Prefer headers, the second with respond-async: 202');
my @got = $ws->collect(count => 6, timeout => 5);
is_deeply([map { $_->{seq} } @got], [2 .. 7], 'the subscriber got seqs 2-7 in order');

# --- the body is checked before the answer -------------------------------------
$res = pub('async:one', '{"type":"reset","data":1}', prefer => 'respond-async');
is($res->{status}, 400, 'a reserved type with respond-async: still 400');
$res = pub('async:one', 'not json', prefer => 'respond-async');
is($res->{status}, 400, 'a body that is not JSON: still 400');
ok(!$ws->recv_json(timeout => 0.5), 'nothing was published for them');
$ws->close;

# --- pipelined on one connection: all answered, order kept ------------------------
my $n = 200;
$ws = Insite::WS->connect($port);
is($ws->subscribe(['async:pipe'])->{type}, 'subscribed', 'a subscriber of async:pipe');
my $sock = IO::Socket::INET->new(PeerAddr => '127.0.0.1', PeerPort => $port)
    or die "connect: $!";
my $reqs = '';
for my $i (1 .. $n) {
    my $body = $json->encode({ type => 'tick', data => { n => $i } });
    $reqs .= "POST /pub?channel=async:pipe HTTP/1.1\r\nHost: localhost\r\n"
           . "Prefer: respond-async\r\nContent-Type: application/json\r\n"
           . "Content-Length: " . length($body) . "\r\n\r\n$body";
}
print {$sock} $reqs;
my $buf = '';
my $deadline = Time::HiRes::time() + 10;
my @statuses;
while (@statuses < $n && Time::HiRes::time() < $deadline) {
    my $r = sysread($sock, $buf, 65536, length $buf);
    last unless $r;
    @statuses = $buf =~ m{^HTTP/1\.1 (\d{3})}mg;
}
close $sock;
is(scalar @statuses, $n, "$n pipelined publishes on one connection: $n answers");
is(scalar(grep { $_ == 202 } @statuses), $n, '... all 202');
@got = $ws->collect(count => $n, timeout => 10);
is(scalar @got, $n, "the subscriber got $n messages");
is_deeply([map { $_->{data}{n} } @got], [1 .. $n], '... in the order of the requests');
is(Insite::WS->seq_problem([map { $_->{seq} } @got], 1, $n), '', '... as seqs 1..' . $n);
is($redis->cli('HGET', 'insite:{async:pipe}:seq', 'seq'), $n, "the channel's seq in Redis is $n");
$ws->close;

# --- insite_ws_publish_replicas: the preference is not applied --------------------
# (this Redis has no replica: the WAIT runs out, which only a synchronous
# publish can answer)
$res = pub('async:durable', { data => 1 }, prefer => 'respond-async', path => '/durable');
is($res->{status}, 504, 'with insite_ws_publish_replicas: the durable answer (504, no replica), not 202');
ok(!$res->{headers}{'preference-applied'}, '... and no Preference-Applied');

# --- a call that fails after the 202: logged and counted ------------------------------
my $before = metric('insite_ws_publish_async_failures_total');
is($before, 0, 'insite_ws_publish_async_failures_total starts at 0');
$redis->cli('CONFIG', 'SET', 'maxmemory-policy', 'noeviction');
$redis->cli('CONFIG', 'SET', 'maxmemory', '1');
$res = pub('async:oom', { data => 1 }, prefer => 'respond-async');
is($res->{status}, 202, 'Redis out of memory: the publish is still answered 202');
$res = pub('async:oom', { data => 2 });
is($res->{status}, 500, '... where a synchronous one is answered 500');
$redis->cli('CONFIG', 'SET', 'maxmemory', '0');
my $count = 0;
for (1 .. 50) {
    $count = 0;
    $count += metric('insite_ws_publish_async_failures_total') // 0;
    last if $count >= 1;
    Time::HiRes::sleep(0.1);
}
is($count, 1, 'insite_ws_publish_async_failures_total counts the failed accepted one');
like($ngx->error_log, qr/insite ws: accepted publish \(202\) to "async:oom" failed: OOM/,
     'the error log names the channel and Redis\' error');
is($redis->cli('EXISTS', 'insite:{async:oom}:seq'), 0, 'and nothing was written for the channel');

# --- Redis down: refused before any answer ------------------------------------------------
$redis->stop;
$res = pub('async:down', { data => 1 }, prefer => 'respond-async');
is($res->{status}, 503, 'Redis down: 503 with respond-async too');
is($res->{json} && $res->{json}{error}, 'service_unavailable', '... service_unavailable');

$ngx->stop;
done_testing();
