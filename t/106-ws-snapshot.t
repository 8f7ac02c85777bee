# subscribe with "last": N replays the last N retained messages before the
# live ones (a snapshot of the latest quote), with no reset when history
# holds fewer.
use strict;
use warnings;
use lib 't/lib';
use Test::More;
use Insite::Services qw(start_redis);
use Insite::Nginx;
use Insite::WS;

my $redis = start_redis();
my $ngx = Insite::Nginx->new(
    http   => "    insite_redis 127.0.0.1:" . $redis->port . ";\n"
            . "    insite_ws_shutdown_spread 100ms;",
    server => "        location /ws { insite_ws; insite_ws_history 3; }\n"
            . "        location /pub { insite_ws_publish; insite_ws_history 3; }\n"
            . "        location /status { insite_ws_status; }",
);
# both workers on Redis before the first publish (a publish before that is a 503)
ok(Insite::WS->wait_ready($ngx->port), 'Redis connected in both workers');

sub publish {
    my ($ch, $price) = @_;
    my $r = $ngx->request('POST', "/pub?channel=$ch",
                          body => qq({"type":"stock_update","data":{"price":$price}}));
    is($r->{status}, 201, "published $price to $ch") or diag $r->{body};
}

sub subscribe {
    my (%req) = @_;
    my $ws = Insite::WS->connect($ngx->port, path => '/ws');
    $ws->send_json({ op => 'subscribe', id => 's', %req });
    my $m = $ws->recv_json(timeout => 3);
    is($m->{type}, 'subscribed', 'subscribed first') or diag explain $m;
    return ($ws, $m);
}

sub seqs_until_quiet {
    my ($ws) = @_;
    my @got;
    while (my $m = $ws->recv_json(timeout => 0.7)) {
        push @got, $m->{type} eq 'reset' ? "reset:$m->{first_seq}" : $m->{seq};
    }
    return \@got;
}

publish('stock_updates:AAPL', $_) for 101 .. 105;

my ($ws, $sub) = subscribe(channels => ['stock_updates:AAPL'], last => 2);
is($sub->{channels}{'stock_updates:AAPL'}{seq}, 5, 'position 5');
is_deeply(seqs_until_quiet($ws), [4, 5], 'last 2: seq 4 and 5, no reset');
publish('stock_updates:AAPL', 106);
my $m = $ws->recv_json(timeout => 3);
is($m->{seq}, 6, 'then live, without a gap');

my ($ws2) = subscribe(channels => ['stock_updates:AAPL'], last => 10);
is_deeply(seqs_until_quiet($ws2), [4, 5, 6],
          'last 10 with 3 retained: the 3 there are, no reset (nothing owed)');

my ($ws3) = subscribe(channels => ['stock_updates:AAPL'], last => 0);
is_deeply(seqs_until_quiet($ws3), [], 'last 0: live only');

my ($ws4) = subscribe(channels => ['stock_updates:MSFT'], last => 5);
is_deeply(seqs_until_quiet($ws4), [], 'never published: nothing to replay');

# since wins over last for the channels it names
my ($ws5) = subscribe(channels => ['stock_updates:AAPL'], last => 1,
                      since => { 'stock_updates:AAPL' => 1 });
is_deeply(seqs_until_quiet($ws5), ['reset:4', 4, 5, 6],
          'since 1 with history 3: reset, then everything retained');

my $bad = Insite::WS->connect($ngx->port, path => '/ws');
$bad->send_json({ op => 'subscribe', id => 'b', channels => ['a'], last => 5000 });
$m = $bad->recv_json(timeout => 3);
is($m->{type}, 'error', 'last over 1000 refused');
is($m->{code}, 'bad_request', 'as a bad request');
is($m->{id}, 'b', 'with the id');

# a body within insite_ws_max_message_size (64k) but past nginx's default
# client_body_buffer_size (16k) is kept in memory, never read back from a
# temporary file inside the worker
{
    my $r = $ngx->request('POST', '/pub?channel=big',
                          body => '{"data":"' . ('z' x 60000) . '"}');
    is($r->{status}, 201, 'a 60 KB publish is accepted');
    unlike($ngx->error_log, qr/buffered to a temporary file/,
           '... without a temporary file');
}

$_->close for $ws, $ws2, $ws3, $ws4, $ws5, $bad;
$ngx->stop;
$ngx->check_log;
done_testing;
