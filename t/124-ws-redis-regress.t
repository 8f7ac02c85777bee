# ngx_http_insite_ws_module: Redis loses its newest writes in the same epoch.
#
# A failover to a replica that had not received the last publishes (or a
# restart from an older snapshot) leaves the channel's state hash with its
# epoch but a lower seq, and the next publishes reuse the seqs subscribers
# already have.  The seq alone cannot tell the new messages from the old,
# so they would be skipped silently.  Here the loss is made by hand on one
# Redis (seq set back from 5 to 3, history 4..5 removed); the periodic
# position check sees Redis behind what was delivered, every client gets a
# reset and then the new 4, 5, 6 — nothing reused is skipped.  When new
# publishes pass the old top before a check runs, the first reused seq that
# comes by pub/sub with other content than was delivered gives the reset.
use strict;
use warnings;
use lib 't/lib';
use Test::More;
use Insite::Services qw(start_redis);
use Insite::Nginx;
use Insite::WS;

plan skip_all => 'TEST_NGINX_LOAD_MODULES not set (run under scripts/test.sh)'
    unless $ENV{TEST_NGINX_LOAD_MODULES};

my $redis = start_redis();
my $rport = $redis->port;

my $n = Insite::Nginx->new(
    http   => "    insite_redis 127.0.0.1:$rport;\n"
            . "    insite_ws_check_interval 300ms;\n",
    server => "        location /ws { insite_ws; }\n"
            . "        location /pub { insite_ws_publish; }\n"
            . "        location /status { insite_ws_status; }",
);
ok(Insite::WS->wait_ready($n->port), 'Redis connected in both workers');

sub pub {
    my ($ch, $i) = @_;
    my $r = Insite::WS->publish($n->port, $ch, { type => 'tick', data => { i => $i } });
    die "publish $ch $i: " . ($r->{status} // $r->{error}) . "\n"
        unless ($r->{status} // 0) == 201;
    return $r->{json}{seq};
}

# the loss in one step (a check between the two writes would see a state
# Redis never had): seq back from 5 to 3, history without 4 and 5
sub lose_writes {
    my ($c) = @_;
    $redis->cli('EVAL', "redis.call('HSET', KEYS[1], 'seq', 3); redis.call('ZREMRANGEBYSCORE', KEYS[2], 4, 5)",
                2, "insite:{$c}:seq", "insite:{$c}:hist");
}

# clients spread over both workers (the kernel picks)
my $ch = 'stock_updates:LOST';
my (@f, %pids);
for my $k (1 .. 30) {
    my $f = Insite::WS::Follower->new(port => $n->port, channels => [$ch], name => "c$k");
    push @f, $f;
    $pids{ ($f->pids)[0] // 0 }++;
    last if @f >= 4 && keys %pids >= 2;
}
Insite::WS::Follower->run_until(\@f, 5, sub { !grep { !$_->live } @f });
cmp_ok(scalar @f, '>=', 4, scalar(@f) . ' clients on ' . keys(%pids) . ' worker(s)');

pub($ch, $_) for 1 .. 5;
ok(Insite::WS::Follower->run_until(\@f, 10, sub { !grep { $_->last_seq($ch) < 5 } @f }),
   'before: 1..5 delivered');

lose_writes($ch);
ok(Insite::WS::Follower->run_until(\@f, 10, sub { !grep { !$_->resets } @f }),
   'the position check finds Redis behind: every client gets a reset');

is(pub($ch, 104), 4, 'the next publish reuses seq 4');
is(pub($ch, 105), 5, 'and 5');
is(pub($ch, 106), 6, 'then 6');
ok(Insite::WS::Follower->run_until(\@f, 10, sub { !grep { $_->last_seq($ch) < 6 } @f }),
   'every client reaches 6');
Insite::WS::Follower->run_until(\@f, 0.5, sub { 0 });

my @bad = grep { join(',', @{ $_->seqs($ch) }) !~ /^1,2,3,4,5(?:,1)?(?:,2)?(?:,3)?,4,5,6$/ } @f;
is(scalar @bad, 0, 'each client: 1..5, a reset, the history kept, then the new 4, 5, 6')
    or diag(join "\n", map { $_->name . ': ' . join(',', @{ $_->seqs($ch) }) } @bad);
is(scalar(grep { $_->resets != 1 } @f), 0, 'exactly one reset each');

like($n->error_log, qr/channel "\Q$ch\E": Redis is at seq 3, behind the 5 delivered/,
     'the error log names the channel and the lost seqs');
$n->stop;

# --- the same loss, then publishes past the old top before any check runs ---
# (check interval 60s): the reused seqs come by pub/sub with other content
{
    my $n2 = Insite::Nginx->new(
        http   => "    insite_redis 127.0.0.1:$rport;\n"
                . "    insite_ws_check_interval 60s;\n",
        server => "        location /ws { insite_ws; }\n"
                . "        location /pub { insite_ws_publish; }\n"
                . "        location /status { insite_ws_status; }",
    );
    ok(Insite::WS->wait_ready($n2->port), 'second nginx: Redis connected in both workers');
    my $ch2 = 'stock_updates:LOST2';
    my @g = map { Insite::WS::Follower->new(port => $n2->port, channels => [$ch2], name => "d$_") } 1 .. 6;
    Insite::WS::Follower->run_until(\@g, 5, sub { !grep { !$_->live } @g });
    my $p2 = sub {
        my ($i) = @_;
        my $r = Insite::WS->publish($n2->port, $ch2, { type => 'tick', data => { i => $i } });
        return ($r->{status} // 0) == 201 ? $r->{json}{seq} : -1;
    };
    $p2->($_) for 1 .. 5;
    ok(Insite::WS::Follower->run_until(\@g, 10, sub { !grep { $_->last_seq($ch2) < 5 } @g }),
       'before: 1..5 delivered');
    lose_writes($ch2);
    is(join(',', map { $p2->($_) } 104 .. 107), '4,5,6,7', 'new messages take seqs 4..7, past the old top');
    ok(Insite::WS::Follower->run_until(\@g, 10, sub { !grep { $_->last_seq($ch2) < 7 || !$_->resets } @g }),
       'every client gets a reset and reaches 7');
    Insite::WS::Follower->run_until(\@g, 0.5, sub { 0 });
    @bad = grep { join(',', @{ $_->seqs($ch2) }) !~ /^1,2,3,4,5,1,2,3,4,5,6,7$/ } @g;
    is(scalar @bad, 0, 'each client: 1..5, a reset, then Redis\' 1..7 (the new 4 and 5 included)')
        or diag(join "\n", map { $_->name . ': ' . join(',', @{ $_->seqs($ch2) }) } @bad);
    is(scalar(grep { $_->resets != 1 } @g), 0, 'exactly one reset each');
    like($n2->error_log, qr/channel "\Q$ch2\E": seq 4 came again with other content after 5 were delivered/,
         'the error log names the reused seq');
    $n2->check_log;
    $n2->stop;
}

done_testing();
