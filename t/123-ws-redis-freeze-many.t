# ngx_http_insite_ws_module + the core's Redis adapter with many channels:
# Redis frozen (SIGSTOP) for less and for more than command_timeout while one
# client follows CHANNELS channels (20,000 by default).  What a user sees:
#  - every sample channel's subscriber gets every message published (or a
#    reset), in order, after either freeze;
#  - the short freeze drops no connection;
#  - after the long one each connection is re-made and then stays: no
#    reconnect storm.  Before issue 18's fix, reading 20k positions at once
#    (200 scripts in one write) made replies come later than command_timeout
#    on a slow machine; the adapter then dropped the connection, the
#    resubscribe read every position again, and so on ("connection lost:
#    command timed out; reconnecting now" many times a second).
# The timeouts here are short (command_timeout=250ms, checks every 200 ms)
# so that the bulk reads weigh as they do at full scale.
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

my $N = $ENV{TEST_FREEZE_CHANNELS} // 20_000;
my $SAMPLE = 100;                       # channels that get messages

my $redis = start_redis();
my $rport = $redis->port;

my $ngx = Insite::Nginx->new(
    http   => "    insite_redis 127.0.0.1:$rport connect_timeout=500ms command_timeout=250ms;\n"
            . "    insite_ws_check_interval 200ms;\n"
            . "    insite_ws_shutdown_spread 100ms;",
    server => "        location /ws { insite_ws; insite_ws_max_channels 100000; insite_ws_subscribe_rate 100000r/s burst=100000; }\n"
            . "        location /pub { insite_ws_publish; }\n"
            . "        location /status { insite_ws_status; }\n"
            . "        location = /metrics { insite_metrics; }",
);
my $port = $ngx->port;
ok(Insite::WS->wait_ready($port), 'Redis connected in both workers');

END {
    diag "error log:\n" . Insite::WS->log_tail($ngx, 60)
        if $ngx && $ngx->pid && !Test::More->builder->is_passing;
}

my @sample = map { "f:" . ($_ * int($N / $SAMPLE)) } 0 .. $SAMPLE - 1;
my %seqs;                               # sample channel -> seqs seen
my %resets;
my %published;                          # sample channel -> last seq accepted

# --- one client follows N channels ----------------------------------------
my $ws = Insite::WS->connect($port, path => '/ws');
is($ws->status, 101, 'handshake');
my ($subscribed, $refused) = (0, 0);
my $sub_deadline = time + 120;
for (my $i = 0; $i < $N && time < $sub_deadline; ) {
    my @names = map { "f:$_" } $i .. ($i + 499 < $N ? $i + 499 : $N - 1);
    my $m = $ws->subscribe(\@names, id => "s$i", timeout => 20);
    if ($m && ($m->{type} // '') eq 'subscribed') {
        $subscribed += scalar keys %{ $m->{channels} // {} };
        $i += 500;
    } elsif ($m && ($m->{code} // '') eq 'unavailable') {
        $refused++;                     # "try again shortly": a client retries
        sleep 0.2;
    } else {
        diag "subscribe from $i: " . ($m ? Insite::WS->json->encode($m) : "no answer");
        last;
    }
}
is($subscribed, $N, "one connection follows $N channels");
# a subscribe is refused only while the command connection is re-made; a
# storm refuses them again and again (a stall of the loaded machine, once)
cmp_ok($refused, '<=', 1, "subscribes refused on the way: $refused");

sub lost_lines {
    my @l = $ngx->error_log =~ /\((commands|pubsub)\): connection lost: ([^;]*);/g;
    return scalar(@l) / 2;
}

# publishes one message to every sample channel (a 503 while Redis comes
# back is retried: the publish did not happen, or its key says so)
sub publish_round {
    my ($round) = @_;
    for my $ch (@sample) {
        my $deadline = time + 20;
        while (time < $deadline) {
            my $res = Insite::WS->publish($port, $ch, { type => 'tick', data => { r => $round } },
                                          key => "$ch-$round");
            if (($res->{status} // 0) == 201 || ($res->{status} // 0) == 200) {
                $published{$ch} = $res->{json}{seq};
                last;
            }
            sleep 0.05;
        }
    }
}

# reads until every sample channel is at its last published seq (or got a
# reset since); false on timeout
sub caught_up {
    my ($secs) = @_;
    my $deadline = time + $secs;
    while (time < $deadline) {
        my @pending = grep { ($seqs{$_} && @{ $seqs{$_} } ? $seqs{$_}[-1] : 0) < $published{$_} } @sample;
        return 1 unless @pending;
        my $m = $ws->recv_json(timeout => 0.5) // next;
        return 0 if $m->{_close};
        my $ch = $m->{channel} // next;
        next unless exists $published{$ch};
        if (($m->{type} // '') eq 'reset') {
            $resets{$ch}++;
            $seqs{$ch} = [ $m->{first_seq} - 1 ];
            next;
        }
        push @{ $seqs{$ch} }, $m->{seq} if defined $m->{seq};
    }
    return 0;
}

sub gaps {
    my @bad;
    for my $ch (@sample) {
        my $p = Insite::WS->seq_problem($seqs{$ch} // [], undef, $published{$ch});
        push @bad, "$ch: $p" if $p;
    }
    return \@bad;
}

publish_round(1);
ok(caught_up(20), 'every sample channel delivered its first message');
is_deeply(gaps(), [], '... in order, each once');
my $lost0 = lost_lines();

# --- a freeze shorter than command_timeout: nothing is dropped ------------
$redis->freeze;
sleep 0.1;
$redis->thaw;
publish_round(2);
ok(caught_up(20), 'after a 100 ms freeze every sample channel got its message');
is_deeply(gaps(), [], '... in order, each once');
is(lost_lines() - $lost0, 0, 'a freeze shorter than command_timeout drops no connection');

# --- a freeze longer than command_timeout and the heartbeat ---------------
$redis->freeze;
sleep 1.5;
$redis->thaw;
ok(Insite::WS->wait_ready($port, timeout => 30), 'both workers are back after a 1.5 s freeze');
my $lost1 = lost_lines();
cmp_ok($lost1 - $lost0, '>=', 1, 'the long freeze dropped connections (' . ($lost1 - $lost0) . ')');
cmp_ok($lost1 - $lost0, '<=', 4, '... at most one per connection (2 workers x commands, pubsub)');
publish_round(3);
ok(caught_up(30), 'after the long freeze every sample channel got its messages (or a reset)');
is_deeply(gaps(), [], '... in order, each once');

# the position checks of all channels run again and again: they must not
# bring the connections down (20 check intervals)
sleep 4;
is(lost_lines() - $lost1, 0, 'no reconnect storm: no connection dropped after the recovery')
    or diag join "\n", grep { /connection lost/ } split /\n/, $ngx->error_log;
ok(Insite::WS->wait_ready($port), 'both workers connected at the end');
publish_round(4);
ok(caught_up(20), 'and still delivering');
is_deeply(gaps(), [], '... in order, each once');
diag "resets: " . scalar(keys %resets) . " channels" if %resets;

$ws->close;
$ngx->stop;
$ngx->check_log;

done_testing;
