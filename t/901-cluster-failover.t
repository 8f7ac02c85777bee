# ngx_http_insite_ws_module on a real Redis Cluster (3 masters + 3
# replicas), two nginx with 2 workers each, subscribers of every channel on
# both, a publisher retrying with Idempotency-Key through both servers, while
#   (a) a master is killed (kill -9) and its replica promoted, with 501
#       channels spread over all shards,
#   (b) a slot range holding channels is resharded live (redis-cli --cluster
#       reshard),
#   (c) a master is frozen (SIGSTOP) past command_timeout until its replica
#       takes over, then thawed (it comes back as a replica).
# Every subscriber gets every acknowledged message exactly once and in order,
# or a `reset` covering what it cannot get: zero silent gaps, no duplicate,
# nothing out of order; and no worker crashed.
use strict;
use warnings;
use lib 't/lib';
use Test::More;
use Insite::RedisCluster;
use Insite::Nginx;
use Insite::WS;
use Insite::ClusterFeed;

my $cl = Insite::RedisCluster->new(masters => 3, replicas => 1, node_timeout => 1500);

my ($A, $B) = Insite::ClusterFeed->start_servers($cl);

my $feed = Insite::ClusterFeed->new(cluster => $cl, servers => [$A, $B]);

sub channels { $feed->channels(@_) }
sub slot_of_channel { $feed->slot_of_channel($_[0]) }
sub run_phase { my ($tag, $rounds, $event, @ch) = @_; $feed->run_phase($tag, $rounds, $event, \@ch) }

# --- (a) a master killed, its replica promoted -------------------------------------------

{
    # the issue's scale: 500 channels over all shards (167 a master), 50 a
    # WebSocket, 4 rounds
    my $wide = Insite::ClusterFeed->new(cluster => $cl, servers => [$A, $B], per_follower => 50, pause => 0);
    my @ch = $wide->channels('fa', 167);
    my $victim = $cl->master_of_slot(slot_of_channel($ch[0]));
    $wide->run_phase('kill -9, ' . scalar(@ch) . ' channels', 4, sub {
        ok($cl->failover_kill9($victim, 30), 'master :' . $victim->port
           . ' killed, its slots served by the promoted replica');
    }, \@ch);
    # back, as a replica of the promoted one (its nodes.conf is kept)
    $victim->restart;
    ok($cl->wait_ok(30), 'the killed node rejoined');
    ok(Insite::WS->wait_ready($A->port, timeout => 20) && Insite::WS->wait_ready($B->port, timeout => 20),
       'both servers connected to every shard after the failover');
}

# --- (b) live reshard of a slot range holding channels -----------------------------------

{
    my @m = $cl->masters;
    my ($from, $to) = @m[0, 1];
    # redis-cli moves the source's lowest slots: channels in them move
    my $lo = (sort { $a <=> $b } map { $_->[0] } grep { $_->[2] == $from->port } @{ $cl->slot_ranges })[0];
    my @moving = channels('rs', 3, sub { $_[0] >= $lo && $_[0] < $lo + 300 });
    my @staying = channels('rt', 2);
    run_phase('reshard', 30, sub {
        ok($cl->reshard($from, $to, 300), '300 slots moved from :' . $from->port . ' to :' . $to->port);
    }, @moving, @staying);
    is($cl->master_of_slot(slot_of_channel($moving[0]))->port, $to->port,
       "channel $moving[0] now lives on :" . $to->port);
}

# --- (c) a master frozen past command_timeout until its replica takes over --------------

{
    my @ch = channels('fz', 4);
    my $victim = $cl->master_of_slot(slot_of_channel($ch[0]));
    run_phase('SIGSTOP', 30, sub {
        ok($cl->freeze_until_failover($victim, 30), 'master :' . $victim->port
           . ' frozen until its replica was promoted');
        $victim->thaw;
    }, @ch);
}

$A->stop;
$B->stop;
$A->check_log;
$B->check_log;
done_testing;
