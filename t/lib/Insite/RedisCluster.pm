package Insite::RedisCluster;

# A real Redis Cluster for tests: N masters with R replicas each, every node a
# redis-server on a free loopback port with its own temp dir, joined with
# `redis-cli --cluster create`.
#
#   use Insite::RedisCluster;
#   my $c = Insite::RedisCluster->new(masters => 3, replicas => 1);
#   $c->seeds;                       # "127.0.0.1:p1 127.0.0.1:p2 ..."
#   $c->cli('SET', '{k}x', 1);       # redis-cli -c against the first node
#   my $m = $c->master_of_slot(42);  # Insite::Services::Redis object
#   $c->slot_of('insite:{ch}:seq');  # CLUSTER KEYSLOT
#   $c->failover_kill9($m);          # kill -9, wait until a replica owns its slots
#   $c->wait_ok;                     # cluster_state:ok seen by every live node
#   $c->begin_migration($slot, $to, @keys); $c->end_migration($slot, $to);
#   $c->move_slots($to, @slots);     # both, with every key of the slots
#
# Nodes are Insite::Services::Redis objects, so they are stopped when the test
# exits (END, DESTROY, signals) like every other server Insite::Services starts.

use strict;
use warnings;

use File::Temp ();
use Time::HiRes ();

use Insite::Services ();

sub new {
    my ($class, %o) = @_;
    my $masters  = $o{masters}  // 3;
    my $replicas = $o{replicas} // 1;
    my $self = bless {
        node_timeout => $o{node_timeout} // 2000,
        nodes        => [],
        tmp          => File::Temp->newdir('insite-cluster-XXXXXX', TMPDIR => 1),
    }, $class;

    my $n = $masters * (1 + $replicas);
    for my $i (1 .. $n) {
        my $dir = $self->{tmp}->dirname . "/node$i";
        mkdir $dir or die "mkdir $dir: $!\n";
        push @{ $self->{nodes} }, Insite::Services::start_redis(
            dir  => $dir,
            args => ['--cluster-enabled', 'yes',
                     '--cluster-config-file', "$dir/nodes.conf",
                     '--cluster-node-timeout', $self->{node_timeout},
                     # the bus port must be free too (port + 10000 may not be)
                     '--cluster-port', Insite::Services::free_port(),
                     # a replica promoted by a test must not wait for its
                     # data age check
                     '--cluster-replica-validity-factor', '0',
                     @{ $o{args} || [] }]);
    }

    if ($masters == 1 && $replicas == 0) {
        # redis-cli --cluster create wants 3 masters: one node takes all
        # slots by itself
        my $node = $self->{nodes}[0];
        $node->cli('CLUSTER', 'ADDSLOTSRANGE', 0, 16383) eq 'OK'
            or die "CLUSTER ADDSLOTSRANGE failed\n";
    }
    else {
        my ($out, $st) = Insite::Services::run_cmd(60,
            $Insite::Services::RedisCli, '--cluster', 'create',
            (map { '127.0.0.1:' . $_->port } @{ $self->{nodes} }),
            '--cluster-replicas', $replicas, '--cluster-yes');
        die "redis-cli --cluster create failed:\n" . ($out // '') . "\n"
            unless defined $st && $st == 0;
    }

    $self->wait_ok(60) or die "cluster not ok after 60s\n";
    return $self;
}

sub nodes { @{ $_[0]{nodes} } }
sub dir   { $_[0]{tmp}->dirname }

# "127.0.0.1:p1 127.0.0.1:p2 ..." of the live nodes (for insite_redis_cluster)
sub seeds {
    my ($self, $sep) = @_;
    return join $sep // ' ',
        map { '127.0.0.1:' . $_->port } grep { $_->running } $self->nodes;
}

sub live_node {
    my ($self) = @_;
    for my $n ($self->nodes) {
        return $n if $n->running && !$n->{frozen};
    }
    die "no live cluster node\n";
}

sub node_by_port {
    my ($self, $port) = @_;
    for my $n ($self->nodes) {
        return $n if $n->port == $port;
    }
    return undef;
}

# redis-cli -c (follows redirects) against a live node
sub cli {
    my ($self, @args) = @_;
    return $self->live_node->cli('-c', @args);
}

# the slot of a key, hash tags honoured (CRC16-CCITT XMODEM mod 16384, as
# CLUSTER KEYSLOT; computed here: a test asks it thousands of times)
sub slot_of {
    my ($self, $key) = @_;
    if ($key =~ /\{/) {
        my $s = index($key, '{');
        my $e = index($key, '}', $s + 1);
        $key = substr($key, $s + 1, $e - $s - 1) if $e > $s + 1;
    }
    my $crc = 0;
    for my $b (unpack 'C*', $key) {
        $crc ^= $b << 8;
        for (1 .. 8) {
            $crc = $crc & 0x8000 ? (($crc << 1) ^ 0x1021) & 0xffff : ($crc << 1) & 0xffff;
        }
    }
    return $crc & 16383;
}

# [ [start, end, master_port, replica_port...], ... ] from CLUSTER SLOTS as a
# live node sees it
sub slot_ranges {
    my ($self, $node) = @_;
    $node //= $self->live_node;
    my $out = $node->cli('CLUSTER', 'SLOTS') // '';
    # redis-cli prints the nested arrays flat, one value a line:
    # start, end, ip, port, id, [ip, port, id]...
    my @l = split /\n/, $out;
    my @ranges;
    my $i = 0;
    while ($i < @l) {
        my ($s, $e) = ($l[$i], $l[$i + 1]);
        $i += 2;
        my @ports;
        while ($i < @l && $l[$i] =~ /^\d+\.\d+\.\d+\.\d+$/) {
            push @ports, $l[$i + 1];
            $i += 3;
            # newer redis-cli may print a metadata map: skip to next ip/range
            $i++ while $i < @l && $l[$i] !~ /^\d+$/
                       && $l[$i] !~ /^\d+\.\d+\.\d+\.\d+$/;
        }
        push @ranges, [$s, $e, @ports];
    }
    return \@ranges;
}

sub master_of_slot {
    my ($self, $slot, $node, $ranges) = @_;
    for my $r (@{ $ranges // $self->slot_ranges($node) }) {
        return $self->node_by_port($r->[2])
            if $slot >= $r->[0] && $slot <= $r->[1];
    }
    return undef;
}

sub masters {
    my ($self) = @_;
    my %seen;
    return grep { !$seen{ $_->port }++ }
           map { $self->node_by_port($_->[2]) } @{ $self->slot_ranges };
}

sub node_id {
    my ($self, $node) = @_;
    return $node->cli('CLUSTER', 'MYID');
}

# every live, unfrozen node reports cluster_state:ok and all 16384 slots
# assigned to a reachable master
sub wait_ok {
    my ($self, $secs) = @_;
    my $deadline = Time::HiRes::time() + ($secs // 30);
    while (Time::HiRes::time() < $deadline) {
        my $ok = 1;
        for my $n (grep { $_->running && !$_->{frozen} } $self->nodes) {
            my $info = $n->cli('CLUSTER', 'INFO') // '';
            unless ($info =~ /cluster_state:ok/
                    && $info =~ /cluster_slots_ok:16384/)
            {
                $ok = 0;
                last;
            }
        }
        return 1 if $ok && $self->replicas_synced;
        Time::HiRes::sleep(0.1);
    }
    return 0;
}

# every live replica has its master link up (its initial sync done)
sub replicas_synced {
    my ($self) = @_;
    for my $n (grep { $_->running && !$_->{frozen} } $self->nodes) {
        my $info = $n->cli('INFO', 'replication') // '';
        next unless $info =~ /role:slave/;
        return 0 unless $info =~ /master_link_status:up/
                     && $info !~ /master_sync_in_progress:1/;
    }
    return 1;
}

# kill -9 a master; wait until another node owns its slots and the cluster
# is ok again (its replica is promoted after node_timeout)
sub failover_kill9 {
    my ($self, $master, $secs) = @_;
    my $port = $master->port;
    $master->kill9;
    return $self->_wait_not_owner($port, $secs);
}

sub _wait_not_owner {
    my ($self, $port, $secs) = @_;
    my $deadline = Time::HiRes::time() + ($secs // 60);
    while (Time::HiRes::time() < $deadline) {
        my $owns = grep { $_->[2] == $port } @{ $self->slot_ranges };
        return 1 if !$owns && $self->wait_ok(1);
        Time::HiRes::sleep(0.1);
    }
    return 0;
}

# SIGSTOP a master until its replica is promoted; returns once the cluster is
# ok without it (the caller thaws it later)
sub freeze_until_failover {
    my ($self, $master, $secs) = @_;
    $master->freeze;
    return $self->_wait_not_owner($master->port, $secs);
}

# moves $count slots from the master of $from_slot to $to (a master node)
# with redis-cli --cluster reshard, live
sub reshard {
    my ($self, $from, $to, $count) = @_;
    my ($out, $st) = Insite::Services::run_cmd(120,
        $Insite::Services::RedisCli, '--cluster', 'reshard',
        '127.0.0.1:' . $self->live_node->port,
        '--cluster-from', $self->node_id($from),
        '--cluster-to', $self->node_id($to),
        '--cluster-slots', $count, '--cluster-yes');
    die "redis-cli --cluster reshard failed:\n" . ($out // '') . "\n"
        unless defined $st && $st == 0;
    return $self->wait_ok(30);
}

# puts one slot mid-migration (MIGRATING on its owner, IMPORTING on $to);
# keys listed in @move are migrated, the rest stay: a client asking for a
# moved key gets ASK, one asking the target without ASKING gets MOVED
sub begin_migration {
    my ($self, $slot, $to, @move) = @_;
    my $from = $self->master_of_slot($slot) or die "no owner of $slot\n";
    $to->cli('CLUSTER', 'SETSLOT', $slot, 'IMPORTING', $self->node_id($from))
        eq 'OK' or die "SETSLOT IMPORTING failed\n";
    $from->cli('CLUSTER', 'SETSLOT', $slot, 'MIGRATING', $self->node_id($to))
        eq 'OK' or die "SETSLOT MIGRATING failed\n";
    for my $k (@move) {
        my $r = $from->cli('MIGRATE', '127.0.0.1', $to->port, $k, 0, 5000);
        die "MIGRATE $k: $r\n" unless defined $r && $r =~ /OK|NOKEY/;
    }
    return $from;
}

# ends a migration begun above: the slot belongs to $to everywhere
sub end_migration {
    my ($self, $slot, $to) = @_;
    my $id = $self->node_id($to);
    for my $n (grep { $_->running } $self->nodes) {
        $n->cli('CLUSTER', 'SETSLOT', $slot, 'NODE', $id);
    }
    return $self->wait_ok(30);
}

# moves slots and every key in them to $to (a master), live, one slot after
# the other with the steps redis-cli --cluster reshard takes for each
# (IMPORTING, MIGRATING, MIGRATE, SETSLOT NODE on every node); true once
# the cluster is ok again
sub move_slots {
    my ($self, $to, @slots) = @_;
    my $id = $self->node_id($to);
    for my $slot (@slots) {
        my $from = $self->master_of_slot($slot) or die "no owner of $slot\n";
        my @keys = grep { length } split /\n/,
                   $from->cli('CLUSTER', 'GETKEYSINSLOT', $slot, 100000) // '';
        $self->begin_migration($slot, $to, @keys);
        $_->cli('CLUSTER', 'SETSLOT', $slot, 'NODE', $id) for grep { $_->running } $self->nodes;
    }
    return $self->wait_ok(30);
}

sub stop {
    my ($self) = @_;
    $_->stop for $self->nodes;
}

1;
