# ngx_http_insite_ws_module on a real Redis Cluster (3 masters + 3
# replicas), two nginx with 2 workers each, subscribers of every channel on
# both, a publisher retrying with Idempotency-Key through both servers, while
#   (a) a master is killed (kill -9) and its replica promoted,
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
use Time::HiRes qw(time sleep);
use File::Temp ();
use POSIX ();
use Insite::RedisCluster;
use Insite::Nginx;
use Insite::WS;

my $cl = Insite::RedisCluster->new(masters => 3, replicas => 1, node_timeout => 1500);

my %conf = (
    http   => "    insite_redis_cluster " . $cl->seeds . " connect_timeout=300ms command_timeout=300ms;\n"
            . "    insite_ws_check_interval 300ms;",
    server => "        location /ws { insite_ws; }\n"
            . "        location /pub { insite_ws_publish; }\n"
            . "        location /status { insite_ws_status; }",
);
my $A = Insite::Nginx->new(%conf);
my $B = Insite::Nginx->new(%conf);

END {
    for my $n (grep { $_ && $_->pid } $A, $B) {
        diag "error log of nginx on " . $n->port . ":\n" . Insite::WS->log_tail($n, 60)
            unless Test::More->builder->is_passing;
    }
}

ok(Insite::WS->wait_ready($A->port, timeout => 20), 'nginx A: cluster connected');
ok(Insite::WS->wait_ready($B->port, timeout => 20), 'nginx B: cluster connected');

sub slot_of_channel { $cl->slot_of("insite:{$_[0]}:seq") }

# $per channels on each master, named $tag.<i>; with $pick, only channels
# whose slot passes it
sub channels {
    my ($tag, $per, $pick) = @_;
    my %by;
    my $ranges = $cl->slot_ranges;
    for my $i (1 .. 20000) {
        my $c = "$tag.$i";
        my $slot = slot_of_channel($c);
        next if $pick && !$pick->($slot);
        my $m = $cl->master_of_slot($slot, undef, $ranges) or next;
        push @{ $by{ $m->port } }, $c if @{ $by{ $m->port } // [] } < $per;
        last if keys %by == 3 && !grep { @$_ < $per } values %by;
        last if $pick && grep { @$_ >= $per } values %by;
    }
    return map { @$_ } values %by;
}

sub followers {
    my (@ch) = @_;
    my @f;
    for my $c (@ch) {
        for my $n ($A, $B) {
            push @f, Insite::WS::Follower->new(port => $n->port, channels => [$c],
                                               name => "$c@" . ($n == $A ? 'A' : 'B'));
        }
    }
    ok(Insite::WS::Follower->run_until(\@f, 20, sub { !grep { !$_->live } @f }),
       scalar(@f) . ' subscribers live, on both servers');
    return @f;
}

# publishes rounds 1..$rounds to every channel, alternating servers, each
# with Idempotency-Key "<channel>-<round>", retried until accepted; writes
# "channel round seq" per acknowledged publish
sub publisher {
    my ($rounds, $pause, @ch) = @_;
    my $out = File::Temp->new(TEMPLATE => 'insite-pub-XXXXXX', TMPDIR => 1);
    my $pid = fork // die "fork: $!";
    return ($pid, $out) if $pid;
    open my $fh, '>', $out->filename or POSIX::_exit(2);
    $fh->autoflush(1);
    my @ports = ($A->port, $B->port);
    my $k = 0;
    for my $i (1 .. $rounds) {
        for my $c (@ch) {
            my ($res, $ok);
            my $give_up = time + 30;
            while (time < $give_up) {
                $k++;
                $res = Insite::WS->publish($ports[$k % 2], $c,
                                           { type => 'tick', data => { i => $i } },
                                           key => "$c-$i", timeout => 3);
                $ok = ($res->{status} // 0) =~ /^20[01]$/;
                last if $ok;
                sleep 0.05;
            }
            POSIX::_exit(1) unless $ok;
            print $fh "$c $i $res->{json}{seq}\n";
        }
        sleep $pause if $pause;
    }
    close $fh;
    POSIX::_exit(0);
}

sub acked {
    my ($file) = @_;
    open my $fh, '<', $file->filename or return {};
    my %r;
    while (<$fh>) { my ($c, $i, $seq) = split; $r{$c}{$i} = $seq }
    return \%r;
}

sub rounds_done {
    my ($file) = @_;
    my $r = acked($file);
    my $n = 0;
    $n += keys %$_ for values %$r;
    return $n;
}

# every acknowledged seq once, in order, or covered by a reset
sub check {
    my ($tag, $acked, @f) = @_;
    my ($silent, $bad) = (0, 0);
    my $resets = 0;
    for my $f (@f) {
        my ($c) = $f->name =~ /^(.*)@/;
        my $seqs = $f->seqs($c);
        my %got;
        my $order = '';
        # a reset to a new epoch (the data was lost with its master before
        # it reached the replica) starts the seqs again at its first_seq
        my @restarts = map { $_->{first_seq} } grep { ($_->{first_seq} // 0) > 0 } $f->resets;
        for my $i (0 .. $#$seqs) {
            if ($i && $seqs->[$i] <= $seqs->[$i - 1] && @restarts
                && $restarts[0] == $seqs->[$i])
            {
                shift @restarts;
                %got = ();
            }
            $order ||= "duplicate $seqs->[$i]" if $got{ $seqs->[$i] }++;
            $order ||= "$seqs->[$i] after $seqs->[$i - 1]"
                if $i && $seqs->[$i] < $seqs->[$i - 1];
        }
        is($order, '', $f->name . ": no duplicate, nothing out of order") or $bad++;
        my @resets = $f->resets;
        $resets += @resets;
        my @missing = grep { !$got{$_} } sort { $a <=> $b } values %{ $acked->{$c} };
        my @silent = grep { my $s = $_; !grep { ($_->{first_seq} // 0) > $s } @resets } @missing;
        $silent += @silent;
        is(scalar @silent, 0, $f->name . ': every acknowledged message delivered or reset')
            or diag "silently missing: @silent[0 .. ($#silent > 9 ? 9 : $#silent)]";
    }
    diag "$tag: $resets reset(s) over " . scalar(@f) . ' subscribers';
    return $silent + $bad;
}

sub run_phase {
    my ($tag, $rounds, $event, @ch) = @_;
    my @f = followers(@ch);
    my ($pid, $out) = publisher($rounds, 0.02, @ch);
    my $total = $rounds * @ch;
    my $fired;
    my $pub_done;
    Insite::WS::Follower->run_until(\@f, 120, sub { $pub_done }, sub {
        if (!$fired && rounds_done($out) >= $total / 4) {
            $fired = 1;
            $event->();
        }
        $pub_done = 1 if waitpid($pid, POSIX::WNOHANG()) == $pid;
    });
    ok($pub_done, "$tag: the publisher finished");
    is($? >> 8, 0, "$tag: every publish was acknowledged (with retries)");
    ok($fired, "$tag: the event happened mid-stream");
    my $acked = acked($out);
    # wait until every subscriber has the last acknowledged seq (or a reset past it)
    my $caught = Insite::WS::Follower->run_until(\@f, 30, sub {
        !grep {
            my ($c) = $_->name =~ /^(.*)@/;
            my $last = $acked->{$c}{$rounds} // 0;
            $_->last_seq($c) < $last && !grep { ($_->{first_seq} // 0) > $last } $_->resets
        } @f
    });
    ok($caught, "$tag: every subscriber reached the last acknowledged message")
        or diag join ', ', map { my ($c) = $_->name =~ /^(.*)@/;
                                 $_->name . '=' . $_->last_seq($c) . '/' . ($acked->{$c}{$rounds} // '?') }
                           grep { my ($c) = $_->name =~ /^(.*)@/;
                                  $_->last_seq($c) < ($acked->{$c}{$rounds} // 0) } @f;
    check($tag, $acked, @f);
    $_->ws->close for grep { $_->ws } @f;
}

# --- (a) a master killed, its replica promoted -------------------------------------------

{
    my @ch = channels('fa', 4);
    my $victim = $cl->master_of_slot(slot_of_channel($ch[0]));
    run_phase('kill -9', 30, sub {
        ok($cl->failover_kill9($victim, 30), 'master :' . $victim->port
           . ' killed, its slots served by the promoted replica');
    }, @ch);
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
