# ngx_http_insite_ws_module: a channel's first publish overtakes the
# position read of its first subscribe.
#
# A subscribe reads the channel's position (lua/position.lua) on the command
# connection once the pub/sub SUBSCRIBE is confirmed.  When Redis runs that
# read before the channel's first publish ("" at seq 0: never published) but
# the publish's pub/sub message reaches the worker before the read's answer,
# the worker learns seq 1 from pub/sub and then "" from the position, and
# repairs seq 1 from history, which does not carry the epoch.  It must still
# take the epoch those messages came with: otherwise the next message looks
# like an epoch change, and every subscriber gets a reset and seq 1 twice
# (seen once in CI, against the static build, as t/103's "from the start"
# client getting "duplicate 1").
#
# Made certain here by a proxy between nginx and Redis that holds back
# Redis' answers on the command connection (the one that loads scripts) for
# a second and passes the pub/sub connection through at once; the first
# publish goes to Redis directly once Redis has run the position read.
use strict;
use warnings;
use lib 't/lib';
use Test::More;
use Time::HiRes qw(time sleep);
use IO::Select;
use IO::Socket::INET;
use POSIX ();
use Insite::Services qw(start_redis);
use Insite::Nginx;
use Insite::WS;

plan skip_all => 'TEST_NGINX_LOAD_MODULES not set (run under scripts/test.sh)'
    unless $ENV{TEST_NGINX_LOAD_MODULES};

my $redis = start_redis();
my $DELAY = 1;

# --- the proxy: one process, one child per connection ----------------------
my $listen = IO::Socket::INET->new(Listen => 64, LocalAddr => '127.0.0.1:0',
                                   ReuseAddr => 1) or die "listen: $!";
my $pport = $listen->sockport;
my $proxy = fork // die "fork: $!";
if ($proxy == 0) {
    $SIG{CHLD} = 'IGNORE';
    while (my $c = $listen->accept) {
        my $pid = fork // POSIX::_exit(1);
        if ($pid) { close $c; next }
        close $listen;
        relay($c);
        POSIX::_exit(0);
    }
    POSIX::_exit(0);
}
close $listen;

sub relay {
    my ($c) = @_;
    my $r = IO::Socket::INET->new(PeerAddr => '127.0.0.1:' . $redis->port)
        or do { warn "proxy: cannot reach Redis: $!\n"; POSIX::_exit(1) };
    my $sel = IO::Select->new($c, $r);
    my ($kind, @held);          # kind: 'command' (held back) or 'pubsub'
    for (;;) {
        my $wait = @held ? $held[0][0] - time : 1;
        $wait = 0 if $wait < 0;
        for my $s ($sel->can_read($wait)) {
            my $n = sysread($s, my $buf, 65536);
            POSIX::_exit(0) unless $n;
            if ($s == $c) {
                # the command connection loads the scripts before its PING
                $kind //= $buf =~ /SCRIPT/i ? 'command' : 'pubsub';
                syswrite($r, $buf);
            } elsif (($kind // '') eq 'command') {
                push @held, [time + $DELAY, $buf];
            } else {
                syswrite($c, $buf);
            }
        }
        while (@held && $held[0][0] <= time) {
            syswrite($c, (shift @held)->[1]);
        }
    }
}

END { kill 'KILL', $proxy if $proxy; }

my $n = Insite::Nginx->new(
    http   => "    insite_redis 127.0.0.1:$pport connect_timeout=5s command_timeout=3s;\n"
            . "    insite_ws_check_interval 30s;\n",
    server => "        location /ws { insite_ws; }\n"
            . "        location /status { insite_ws_status; }",
);
ok(Insite::WS->wait_ready($n->port, timeout => 20, streak => 4),
   'Redis connected in both workers, through the proxy');

sub publish {
    my ($ch, $i) = @_;
    my $out = $redis->cli('EVAL', Insite::WS->publish_lua,
                          Insite::WS->publish_script_args($ch, data => qq({"i":$i})));
    my ($seq) = ($out // '') =~ /^(\d+)/;
    return $seq;
}

my $ch = 'stock_updates:FIRST' . $$;
my $ws = Insite::WS->connect($n->port);
is($ws->status, 101, 'upgraded');
sub evalsha_calls {
    my $info = $redis->cli('INFO', 'commandstats') // '';
    return $info =~ /cmdstat_evalsha:calls=(\d+)/ ? $1 : 0;
}
my $before = evalsha_calls();
$ws->send_json({ op => 'subscribe', channels => [$ch], since => { $ch => 0 } });

# the SUBSCRIBE is confirmed at once and the position read leaves: once Redis
# has run it (its answer now held back), the first publish comes by pub/sub
my $deadline = time + 10;
sleep 0.02 while evalsha_calls() == $before && time < $deadline;
cmp_ok(evalsha_calls(), '>', $before, 'Redis ran the position read');
is(publish($ch, 1), 1, 'the first publish: seq 1, while the answer is held back');
my @got = $ws->collect(until => sub { ($_[0]{seq} // 0) == 1 && ($_[0]{type} // '') eq 'tick' },
                       timeout => 15, quiet => 10);
is(publish($ch, 2), 2, 'seq 2');
is(publish($ch, 3), 3, 'seq 3');
push @got, $ws->collect(until => sub { ($_[0]{seq} // 0) == 3 && ($_[0]{type} // '') eq 'tick' },
                        timeout => 15, quiet => 10);
my ($sub) = grep { ($_->{type} // '') eq 'subscribed' } @got;
ok($sub, 'subscribed');
is($sub && $sub->{channels}{$ch}{seq}, 0, 'at seq 0 of a channel Redis had no state for');
my @seqs = map { $_->{seq} } grep { ($_->{type} // '') eq 'tick' } @got;
is(join(',', @seqs), '1,2,3', 'every seq once, in order');
my @other = grep { ($_->{type} // '') !~ /^(subscribed|tick)$/ } @got;
is(scalar @other, 0, 'no reset or error') or diag(Insite::WS->json->encode(\@other));
unlike($n->error_log, qr/epoch changed/, 'no epoch change in the error log');

$ws->close;
done_testing();
