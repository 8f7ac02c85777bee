package Insite::ClusterFeed;

# A publish-and-follow run on a real Redis Cluster behind several nginx:
# subscribers of every channel on every server, one publisher retrying each
# message (Idempotency-Key "<channel>-<round>") through the servers in turn
# until it is acknowledged, an event fired mid-stream, and the check that
# every subscriber got every acknowledged message exactly once and in order
# (or, unless strict, a `reset` covering it).
#
#   my $feed = Insite::ClusterFeed->new(cluster => $cl, servers => [$A, $B]);
#   my @ch = $feed->channels('fa', 4);          # 4 channels on each master
#   $feed->run_phase('kill -9', 30, sub { ... }, \@ch, strict => 1);
#
# Options of new: path (publish location, '/pub'), per_follower (channels
# per WebSocket, 1), pause (seconds between rounds, 0.02).

use strict;
use warnings;

use File::Temp ();
use POSIX ();
use Test::More;
use Time::HiRes qw(time sleep);

use Insite::Nginx;
use Insite::WS;

my @Servers;

END {
    for my $n (grep { $_ && $_->pid } @Servers) {
        Test::More::diag("error log of nginx on " . $n->port . ":\n" . Insite::WS->log_tail($n, 60))
            unless Test::More->builder->is_passing;
    }
}

# $count nginx (2 workers each) on the cluster $cl, with /ws, /pub and
# /status, command_timeout 300ms, position checks every 300ms, plus the
# http and server lines given; each waited for until every worker is
# connected to every shard
sub start_servers {
    my ($class, $cl, %o) = @_;
    my %conf = (
        http   => "    insite_redis_cluster " . $cl->seeds . " connect_timeout=300ms command_timeout=300ms;\n"
                . "    insite_ws_check_interval 300ms;\n" . ($o{http} // ''),
        server => "        location /ws { insite_ws; }\n"
                . "        location /pub { insite_ws_publish; }\n"
                . "        location /status { insite_ws_status; }\n" . ($o{server} // ''),
    );
    my @n = map { Insite::Nginx->new(%conf) } 1 .. ($o{count} // 2);
    push @Servers, @n;
    ok(Insite::WS->wait_ready($_->port, timeout => 20), 'nginx on ' . $_->port . ': cluster connected') for @n;
    return @n;
}

sub new {
    my ($class, %o) = @_;
    return bless {
        cluster      => $o{cluster},
        servers      => $o{servers},
        path         => $o{path} // '/pub',
        per_follower => $o{per_follower} // 1,
        pause        => $o{pause} // 0.02,
    }, $class;
}

sub slot_of_channel { $_[0]{cluster}->slot_of("insite:{$_[1]}:seq") }

# $per channels on each master, named $tag.<i>; with $pick, only channels
# whose slot passes it (then until one master has $per)
sub channels {
    my ($self, $tag, $per, $pick) = @_;
    my $cl = $self->{cluster};
    my %by;
    my $ranges = $cl->slot_ranges;
    my $nm = () = $cl->masters;
    for my $i (1 .. 100000) {
        my $c = "$tag.$i";
        my $slot = $self->slot_of_channel($c);
        next if $pick && !$pick->($slot);
        my $m = $cl->master_of_slot($slot, undef, $ranges) or next;
        push @{ $by{ $m->port } }, $c if @{ $by{ $m->port } // [] } < $per;
        last if keys %by == $nm && !grep { @$_ < $per } values %by;
        last if $pick && grep { @$_ >= $per } values %by;
    }
    return map { @$_ } values %by;
}

sub _label { my ($self, $n) = @_; chr(ord('A') + (grep { $self->{servers}[$_] == $n } 0 .. $#{ $self->{servers} })[0]) }

# subscribers of every channel on every server; per_follower channels a socket
sub followers {
    my ($self, @ch) = @_;
    my @f;
    my $k = $self->{per_follower};
    for my $n (@{ $self->{servers} }) {
        for (my $i = 0; $i < @ch; $i += $k) {
            my @g = @ch[$i .. ($i + $k - 1 > $#ch ? $#ch : $i + $k - 1)];
            push @f, Insite::WS::Follower->new(port => $n->port, channels => \@g,
                                               name => "$g[0]\@" . $self->_label($n));
        }
    }
    ok(Insite::WS::Follower->run_until(\@f, 60, sub { !grep { !$_->live } @f }),
       scalar(@f) . ' subscribers of ' . scalar(@ch) . ' channels live, on '
       . scalar(@{ $self->{servers} }) . ' servers');
    $_->{feed_channels} = $_->{channels} // [] for @f;
    return @f;
}

# publishes rounds 1..$rounds to every channel, server after server, each
# retried until accepted (30s); writes "channel round seq" per
# acknowledged publish, and "refused channel round status error" per refusal
sub publisher {
    my ($self, $rounds, @ch) = @_;
    my $out = File::Temp->new(TEMPLATE => 'insite-pub-XXXXXX', TMPDIR => 1);
    my $pid = fork // die "fork: $!";
    return ($pid, $out) if $pid;
    open my $fh, '>', $out->filename or POSIX::_exit(2);
    $fh->autoflush(1);
    my @ports = map { $_->port } @{ $self->{servers} };
    my $k = 0;
    for my $i (1 .. $rounds) {
        for my $c (@ch) {
            my ($res, $ok);
            my $give_up = time + 30;
            while (time < $give_up) {
                $k++;
                $res = Insite::WS->publish($ports[$k % @ports], $c,
                                           { type => 'tick', data => { i => $i } },
                                           key => "$c-$i", timeout => 3,
                                           path => $self->{path});
                $ok = ($res->{status} // 0) =~ /^20[01]$/;
                last if $ok;
                print $fh "refused $c $i ", ($res->{status} // 0), ' ',
                          ($res->{json} ? $res->{json}{error} // '-' : '-'), "\n";
                sleep 0.05;
            }
            POSIX::_exit(1) unless $ok;
            print $fh "$c $i $res->{json}{seq}\n";
        }
        sleep $self->{pause} if $self->{pause};
    }
    close $fh;
    POSIX::_exit(0);
}

# { channel => { round => seq } }, and with a list context the refusals
sub acked {
    my ($self, $file) = @_;
    open my $fh, '<', $file->filename or return {};
    my (%r, %refused);
    while (<$fh>) {
        my @w = split;
        if ($w[0] eq 'refused') { $refused{"$w[3] $w[4]"}++; next }
        $r{ $w[0] }{ $w[1] } = $w[2];
    }
    return wantarray ? (\%r, \%refused) : \%r;
}

sub rounds_done {
    my ($self, $file) = @_;
    my $r = $self->acked($file);
    my $n = 0;
    $n += keys %$_ for values %$r;
    return $n;
}

# every acknowledged seq once, in order, or (unless strict) covered by a
# reset; returns the number of failures
sub check {
    my ($self, $tag, $acked, $f_list, %o) = @_;
    my ($silent, $bad, $resets, $subs) = (0, 0, 0, 0);
    my (@fail_order, @fail_silent);
    for my $f (@$f_list) {
        my @resets = $f->resets;
        $resets += @resets;
        for my $c (@{ $f->{feed_channels} }) {
            $subs++;
            my $seqs = $f->seqs($c);
            my %got;
            my $order = '';
            # a reset (a new epoch: the data was lost with its master before
            # it reached the replica; or the same epoch with seqs Redis gave
            # again after losing writes) starts the seqs again at its first_seq
            my @restarts = map { $_->{first_seq} }
                           grep { ($_->{channel} // $c) eq $c && ($_->{first_seq} // 0) > 0 } @resets;
            for my $i (0 .. $#$seqs) {
                my $restart;
                if ($i && $seqs->[$i] <= $seqs->[$i - 1] && @restarts
                    && $restarts[0] == $seqs->[$i])
                {
                    shift @restarts;
                    %got = ();
                    $restart = 1;
                }
                $order ||= "duplicate $seqs->[$i]" if $got{ $seqs->[$i] }++;
                $order ||= "$seqs->[$i] after $seqs->[$i - 1]"
                    if $i && !$restart && $seqs->[$i] < $seqs->[$i - 1];
            }
            push @fail_order, "$c\@" . $f->name . ": $order" if $order;
            my @missing = grep { !$got{$_} } sort { $a <=> $b } values %{ $acked->{$c} };
            if ($o{strict}) {
                # the message under an acknowledged seq is that round's (a
                # seq given again after a loss would carry another round)
                my $m = $f->msgs($c);
                push @missing, map { "$acked->{$c}{$_}(round $_)" }
                               grep { my $s = $acked->{$c}{$_};
                                      $got{$s} && ($m->{$s}{data}{i} // -1) != $_ }
                               sort { $a <=> $b } keys %{ $acked->{$c} };
            }
            my @silent = $o{strict} ? @missing
                       : grep { my $s = $_; !grep { ($_->{channel} // $c) eq $c && ($_->{first_seq} // 0) > $s } @resets } @missing;
            push @fail_silent, "$c\@" . $f->name . ': ' . join(' ', @silent[0 .. ($#silent > 9 ? 9 : $#silent)])
                if @silent;
        }
    }
    is(scalar @fail_order, 0, "$tag: $subs subscriptions, none got a duplicate or a message out of order")
        or diag join "\n", @fail_order[0 .. ($#fail_order > 9 ? 9 : $#fail_order)];
    is(scalar @fail_silent, 0, "$tag: every acknowledged message delivered"
                               . ($o{strict} ? '' : ' or covered by a reset'))
        or diag "missing: " . join "\n", @fail_silent[0 .. ($#fail_silent > 9 ? 9 : $#fail_silent)];
    diag "$tag: $resets reset(s) over $subs subscriptions";
    return @fail_order + @fail_silent;
}

# followers of @$ch, a publisher of $rounds rounds, $event once a quarter
# is acknowledged, then the check; strict => 1: no reset excuses a loss.
# Returns the acknowledged map and the refusals seen by the publisher.
sub run_phase {
    my ($self, $tag, $rounds, $event, $ch, %o) = @_;
    my @ch = @$ch;
    my @f = $self->followers(@ch);
    my ($pid, $out) = $self->publisher($rounds, @ch);
    my $total = $rounds * @ch;
    my ($fired, $pub_done);
    Insite::WS::Follower->run_until(\@f, $o{timeout} // 180, sub { $pub_done }, sub {
        if (!$fired && $self->rounds_done($out) >= $total / 4) {
            $fired = 1;
            $event->();
        }
        $pub_done = 1 if waitpid($pid, POSIX::WNOHANG()) == $pid;
    });
    ok($pub_done, "$tag: the publisher finished");
    is($? >> 8, 0, "$tag: every publish was acknowledged (with retries)");
    ok($fired, "$tag: the event happened mid-stream");
    my ($acked, $refused) = $self->acked($out);
    my $behind = sub {
        my ($f) = @_;
        grep {
            my $c = $_;
            my $last = $acked->{$c}{$rounds} // 0;
            $f->last_seq($c) < $last
                && !grep { ($_->{channel} // $c) eq $c && ($_->{first_seq} // 0) > $last } $f->resets
        } @{ $f->{feed_channels} };
    };
    # every subscriber has the last acknowledged seq (or a reset past it)
    my $caught = Insite::WS::Follower->run_until(\@f, 30, sub { !grep { $behind->($_) } @f });
    ok($caught, "$tag: every subscriber reached the last acknowledged message")
        or diag join ', ', map { my $f = $_; map { "$_\@" . $f->name . '=' . $f->last_seq($_) . '/'
                                                    . ($acked->{$_}{$rounds} // '?') } $behind->($f) } @f;
    $self->check($tag, $acked, \@f, %o);
    $_->ws->close for grep { $_->ws } @f;
    return ($acked, $refused);
}

1;
