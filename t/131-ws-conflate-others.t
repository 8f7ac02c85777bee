# ngx_http_insite_ws_module: conflation leaves everything else as it was
# (issue 18).
#  - a channel not named by insite_ws_conflate, on the same location and the
#    same kind of slow link, is still closed with 1013 once its queue passes
#    insite_ws_send_buffer;
#  - a quote channel on a location without insite_ws_conflate: 1013 too;
#  - a client that keeps up with a conflated channel gets every message as
#    published, none marked "conflated".
use strict;
use warnings;
use lib 't/lib';
use Test::More;
use Time::HiRes qw(time sleep);
use Insite::Services qw(start_redis);
use Insite::Nginx;
use Insite::WS;

plan skip_all => 'TEST_NGINX_LOAD_MODULES not set (run under scripts/test.sh)'
    unless $ENV{TEST_NGINX_LOAD_MODULES};

my $redis = start_redis();
my $rport = $redis->port;
my $wsport = Insite::Services::free_port();

my $ngx = Insite::Nginx->new(
    http   => "    insite_redis 127.0.0.1:$rport;\n"
            . "    insite_ws_send_buffer 64k;\n",
    server => "        listen 127.0.0.1:$wsport sndbuf=16k;\n"
            . "        location /ws { insite_ws; insite_ws_conflate stock_updates:*;\n"
            . "                       insite_ws_conflate_after 8k; }\n"
            . "        location /plain { insite_ws; }\n"
            . "        location /pub { insite_ws_publish; }\n"
            . "        location /status { insite_ws_status; }\n"
            . "        location = /metrics { insite_metrics; }",
);
my $port = $ngx->port;
ok(Insite::WS->wait_ready($port), 'Redis connected in both workers');

sub metric {
    my ($name) = @_;
    my ($v) = ($ngx->get('/metrics')->{body} // '') =~ /^\Q$name\E (\d+)$/m;
    return $v // -1;
}

my $fill = 'q' x 1000;

sub pub {
    my ($ch, $i) = @_;
    my $r = Insite::WS->publish($port, $ch,
        { type => 'tick', data => { price => $i, fill => $fill } });
    return ($r->{status} // 0) == 201;
}

# a client that stops reading while $ch runs past the send buffer: the
# close code it finds once it reads again (undef: none), and the seqs
sub flood {
    my ($path, $ch) = @_;
    my $ws = Insite::WS->connect($wsport, path => $path, rcvbuf => 4096);
    my $s = $ws->subscribe([$ch]);
    return ('not subscribed') unless $s && $s->{type} eq 'subscribed';
    my $closes = metric('insite_ws_slow_consumer_closes_total');
    my $i = 0;
    # publish until the server gave up on it (bounded)
    while ($i < 1000 && metric('insite_ws_slow_consumer_closes_total') == $closes) {
        pub($ch, ++$i) for 1 .. 20;
    }
    my ($code, @seqs, @marked);
    my $deadline = time + 10;
    while (time < $deadline && !defined $code) {
        my $f = $ws->recv_frame(timeout => 1) // last;
        if ($f->{opcode} == 8) { $code = unpack 'n', $f->{payload}; last }
        next unless $f->{opcode} == 1;
        my $m = Insite::WS::json()->decode($f->{payload});
        push @seqs, $m->{seq} if defined $m->{seq};
        push @marked, $m->{seq} if exists $m->{conflated};
    }
    $ws->close;
    return ($code, \@seqs, \@marked, $i);
}

# --- a channel insite_ws_conflate does not name: 1013 as before ---------------
{
    my ($code, $seqs, $marked, $sent) = flood('/ws', 'sentiment_updates:SLOW');
    is($code, 1013, "sentiment_updates:* (not conflated) on a slow link: closed with 1013 after $sent published");
    is(Insite::WS->seq_problem($seqs, 1), '', 'what it got first is a gap-free run from 1');
    is(scalar @$marked, 0, 'no message marked conflated');
}

# --- a location without insite_ws_conflate: 1013 for a quote channel ----------
{
    my ($code, $seqs, $marked, $sent) = flood('/plain', 'stock_updates:PLAIN');
    is($code, 1013, "stock_updates:* where insite_ws_conflate is not set: closed with 1013");
    is(scalar @$marked, 0, 'no message marked conflated');
}

# --- a client keeping up with a conflated channel gets every message -----------
{
    my $ch = 'stock_updates:FAST';
    my $ws = Insite::WS->connect($wsport, path => '/ws');
    my $s = $ws->subscribe([$ch]);
    is($s && $s->{type}, 'subscribed', 'a fast client subscribed');
    my (@seqs, @marked);
    for my $i (1 .. 50) {
        pub($ch, $i) or last;
        # it reads each message before the next is published
        my $m = $ws->recv_json(timeout => 5) // last;
        push @seqs, $m->{seq};
        push @marked, $m->{seq} if exists $m->{conflated} || exists $m->{first_seq};
    }
    is(Insite::WS->seq_problem(\@seqs, 1, 50), '', 'it got 1..50 once, in order');
    is(scalar @marked, 0, 'none marked conflated: nothing was queued behind it');
    $ws->close;
}

like($ngx->error_log, qr/\[warn\].*slow consumer.*closing with 1013/, 'the slow consumers are logged');
$ngx->check_log;
$ngx->stop;

done_testing();
