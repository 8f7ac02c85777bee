# ngx_http_insite_ws_module: resuming with "since". Replay from history in
# order, then live, with no gap and no duplicate; a "reset" (right after
# "subscribed", before the replay) whenever data cannot be replayed: another
# epoch, history exceeded, Redis lost the channel. And a publisher under way
# while clients join at different moments: each sees one contiguous run.
use strict;
use warnings;
use lib 't/lib';
use Test::More;
use Time::HiRes qw(time sleep);
use JSON::PP ();
use POSIX ();
use IO::Select ();
use Insite::Services qw(start_redis http_request);
use Insite::Nginx;
use Insite::WS;

my $JSON = JSON::PP->new->utf8->canonical;
my $redis = start_redis();
my $rport = $redis->port;

my $ngx = Insite::Nginx->new(
    http   => "    insite_redis 127.0.0.1:$rport;\n"
            . "    insite_ws_check_interval 300ms;\n"
            . "    insite_ws_shutdown_spread 100ms;",
    server => "        location /ws { insite_ws; }\n"
            . "        location /pub { insite_ws_publish; }\n"
            . "        location /pub3 { insite_ws_publish; insite_ws_history 3; }\n"
            . "        location /pub600 { insite_ws_publish; insite_ws_history 600; }\n"
            . "        location /status { insite_ws_status; }",
);
my $port = $ngx->port;
ok(Insite::WS->wait_ready($port), 'Redis connected in both workers');

END {
    diag "error log:\n" . Insite::WS->log_tail($ngx, 60)
        if $ngx && $ngx->pid && !Test::More->builder->is_passing;
}

sub pub {
    my ($ch, $i, %o) = @_;
    my $res = Insite::WS->publish($port, $ch, { type => 'tick', data => { i => $i } }, %o);
    die "publish $ch $i: " . ($res->{status} // $res->{error}) . "\n"
        unless ($res->{status} // 0) == 201;
    return $res->{json};
}

sub client { Insite::WS->connect($port) }

# every frame after "subscribed" until $o{seq} is reached (or quiet)
sub frames_after {
    my ($ws, %o) = @_;
    my @got;
    my $deadline = time + ($o{timeout} // 5);
    while (time < $deadline) {
        my $m = $ws->recv_json(timeout => $o{quiet} // 1) // last;
        push @got, $m;
        last if defined $o{seq} && ($m->{seq} // 0) >= $o{seq};
    }
    return @got;
}

sub describe {
    join ' ', map {
        $_->{type} eq 'reset' ? "reset($_->{first_seq})"
      : defined $_->{seq} ? $_->{seq} : $_->{type}
    } @_;
}

# --- replay with since -------------------------------------------------------------

my $ch = 'stock_updates:RES';
my $first = pub($ch, 1);
my $E = $first->{epoch};
pub($ch, $_) for 2 .. 5;

{
    my $ws = client();
    my $s = $ws->subscribe([$ch], id => 'a', since => { $ch => 2 });
    is($s->{type}, 'subscribed', 'since 2 (a bare number): subscribed first');
    is_deeply($s->{channels}{$ch}, { seq => 5, epoch => $E },
              'subscribed reports the last seq and the epoch');
    my @got = frames_after($ws, seq => 5);
    is(describe(@got), '3 4 5', 'replay 3 4 5 in order');
    is_deeply([map { $_->{data}{i} } @got], [3, 4, 5], '... the messages as published');
    is(join(',', sort keys %{ $got[0] // {} }), 'channel,data,seq,ts,type',
       'a replayed message has the live envelope');
    pub($ch, 6);
    is(describe(frames_after($ws, seq => 6)), '6', 'then live: 6');
    ok(!$ws->recv_json(timeout => 0.5), 'nothing twice');
    $ws->close;
}
{
    my $ws = client();
    my $s = $ws->subscribe([$ch], since => { $ch => { seq => 3, epoch => $E } });
    is($s->{type}, 'subscribed', 'since {seq 3, epoch}: subscribed');
    is(describe(frames_after($ws, seq => 6)), '4 5 6', 'replay 4 5 6');
    $ws->close;
}
{
    my $ws = client();
    $ws->subscribe([$ch], since => { $ch => 6 });
    ok(!$ws->recv_json(timeout => 0.7), 'since = the last seq: nothing replayed');
    pub($ch, 7);
    is(describe(frames_after($ws, seq => 7)), '7', '... then live 7');
    $ws->close;
}
{
    my $ws = client();
    $ws->subscribe([$ch], since => { $ch => 0 });
    is(describe(frames_after($ws, seq => 7)), '1 2 3 4 5 6 7', 'since 0: everything retained');
    $ws->close;
}
{
    my $ws = client();
    $ws->subscribe([$ch]);
    ok(!$ws->recv_json(timeout => 0.7), 'no since: no replay');
    pub($ch, 8);
    is(describe(frames_after($ws, seq => 8)), '8', '... live from the next');
    $ws->close;
}

# --- another epoch: reset right after subscribed, then all retained ------------------

{
    my $ws = client();
    $ws->send_json({ op => 'subscribe', id => 'e', channels => [$ch],
                     since => { $ch => { seq => 3, epoch => 'deadbeefdeadbeef' } } });
    my @got = frames_after($ws, seq => 8);
    is($got[0]{type}, 'subscribed', 'wrong epoch: subscribed first');
    is_deeply($got[1], { type => 'reset', channel => $ch, epoch => $E, first_seq => 1 },
              'then reset with the current epoch and first_seq 1, before any data');
    is(describe(@got[2 .. $#got]), '1 2 3 4 5 6 7 8',
       'then every retained message of the current epoch');
    $ws->close;
}

# two channels in one subscribe: each channel's reset comes before its own replay
my $ch2 = 'sentiment_updates:RES';
my $E2 = pub($ch2, 1)->{epoch};
pub($ch2, 2);
{
    my $ws = client();
    $ws->send_json({ op => 'subscribe', id => 'two', channels => [$ch, $ch2],
                     since => { $ch => { seq => 6, epoch => $E },
                                $ch2 => { seq => 1, epoch => 'otherepoch' } } });
    my @got = frames_after($ws);
    is($got[0]{type}, 'subscribed', 'two channels: subscribed first');
    is(scalar keys %{ $got[0]{channels} }, 2, '... with both channels');
    my @a = grep { ($_->{channel} // '') eq $ch } @got;
    my @b = grep { ($_->{channel} // '') eq $ch2 } @got;
    is(describe(@a), '7 8', "$ch (right epoch): 7 8, no reset");
    is(describe(@b), 'reset(1) 1 2', "$ch2 (wrong epoch): reset, then 1 2");
    $ws->close;
}

# --- history exceeded (insite_ws_history 3) ------------------------------------------

my $hc = 'stock_updates:HIST';
my $HE;
for my $i (1 .. 10) {
    my $r = Insite::WS->publish($port, $hc, { type => 'tick', data => { i => $i } }, path => '/pub3');
    $HE = $r->{json}{epoch};
}
is($redis->cli('ZCARD', "insite:{$hc}:hist"), 3, 'history keeps 3 messages');
{
    my $ws = client();
    my @got = ($ws->subscribe([$hc], since => { $hc => 2 }), frames_after($ws, seq => 10));
    is($got[0]{type}, 'subscribed', 'since 2, history from 8: subscribed');
    is($got[0]{channels}{$hc}{seq}, 10, '... at seq 10');
    is_deeply($got[1], { type => 'reset', channel => $hc, epoch => $HE, first_seq => 8 },
              'reset with first_seq 8, right after subscribed');
    is(describe(@got[2 .. $#got]), '8 9 10', 'then 8 9 10');
    $ws->close;
}
{
    my $ws = client();
    $ws->subscribe([$hc], since => { $hc => { seq => 7, epoch => $HE } });
    is(describe(frames_after($ws, seq => 10)), '8 9 10', 'since 7: 8 9 10, no reset needed');
    $ws->close;
}
{
    my $ws = client();
    $ws->subscribe([$hc], since => { $hc => 0 });
    is(describe(frames_after($ws, seq => 10)), 'reset(8) 8 9 10',
       'since 0 with history from 8: reset(8) then 8 9 10');
    $ws->close;
}

# --- a replay bigger than one history read and than the send buffer -------------------

{
    # 700 messages of ~3 kB, 600 retained: since 0 replays 1.8 MB, more than
    # the default insite_ws_send_buffer (1m) and more than one history batch,
    # to a client that reads as fast as it can: it must get all of it
    my $bc = 'sentiment_updates:BIG';
    my $fill = 'n' x 3000;
    for my $i (1 .. 700) {
        my $r = Insite::WS->publish($port, $bc, { type => 'tick', data => { i => $i, text => $fill } },
                                    path => '/pub600');
        die "publish $i: $r->{status}\n" unless ($r->{status} // 0) == 201;
    }
    my $ws = client();
    my $s = $ws->subscribe([$bc], since => { $bc => 0 });
    is($s && $s->{type}, 'subscribed', 'big replay: subscribed');
    my (@seqs, @resets, $close);
    my $deadline = time + 15;
    while (time < $deadline) {
        my $f = $ws->recv_frame(timeout => 3) // last;
        if ($f->{opcode} == 8) { $close = unpack('n', $f->{payload}) . ' ' . substr($f->{payload}, 2); last }
        next unless $f->{opcode} == 1;
        my $m = $JSON->decode($f->{payload});
        if ($m->{type} eq 'reset') { push @resets, $m->{first_seq}; next }
        push @seqs, $m->{seq};
        last if $m->{seq} == 700;
    }
    ok(!defined $close, 'big replay: the reading client is not closed') or diag "closed: $close";
    is("@resets", '101', 'big replay: reset(101) (history holds 101..700)');
    is(Insite::WS->seq_problem(\@seqs, 101, 700), '', 'big replay: 101..700, once, in order');
    $ws->close;
}

# --- a channel never published --------------------------------------------------------

my $nc = 'stock_updates:NEVER';
my ($ep1, $ep2);
{
    my $a = client();
    my $s = $a->subscribe([$nc], since => { $nc => 0 });
    is($s->{channels}{$nc}{seq}, 0, 'never published: seq 0');
    $ep1 = $s->{channels}{$nc}{epoch};
    is($ep1, '', '... of the empty epoch (a subscribe leaves nothing in Redis)');
    ok(!$a->recv_json(timeout => 0.5), '... and nothing to replay, no reset');
    my $b = client();
    $ep2 = $b->subscribe([$nc])->{channels}{$nc}{epoch};
    is($ep2, $ep1, 'a second subscriber sees the same epoch');
    $a->close;
    $b->close;
    my $c = client();
    is($c->subscribe([$nc])->{channels}{$nc}{epoch}, $ep1,
       'the epoch is stable after everyone left');
    my $r = pub($nc, 1);
    like($r->{epoch}, qr/^[0-9a-f]{16}$/, 'the first publish makes the epoch');
    is($r->{seq}, 1, '... and gets seq 1');
    is(describe(frames_after($c, seq => 1)), '1', 'delivered');
    $c->close;
    my $d = client();
    $d->subscribe([$nc], since => { $nc => { seq => 0, epoch => $ep1 } });
    is(describe(frames_after($d, seq => 1)), '1',
       'resume from {seq 0, epoch from before the first publish}: no reset, 1');
    $d->close;
}

# --- Redis loses the channel while clients are subscribed ------------------------------

my $fc = 'stock_updates:FLUSH';
my $qc = 'stock_updates:QUIET';
{
    my $ws = client();
    my $q = client();
    pub($fc, $_) for 1 .. 3;
    pub($qc, 1);
    my $s = $ws->subscribe([$fc], since => { $fc => 0 });
    my $old = $s->{channels}{$fc}{epoch};
    is(describe(frames_after($ws, seq => 3)), '1 2 3', 'before the loss: 1 2 3');
    my $qs = $q->subscribe([$qc]);
    my $qold = $qs->{channels}{$qc}{epoch};

    is($redis->cli('FLUSHALL'), 'OK', 'FLUSHALL');
    my $r = pub($fc, 4);
    my $new = $r->{epoch};
    isnt($new, $old, 'the next publish makes a new epoch');
    is($r->{seq}, 1, '... and starts at seq 1');
    pub($fc, 5);
    my @got = frames_after($ws, seq => 2);
    is($got[0] && $got[0]{type}, 'reset', 'the subscriber is told: reset')
        or diag describe(@got);
    is_deeply($got[0], { type => 'reset', channel => $fc, epoch => $new, first_seq => 1 },
              '... with the new epoch and first_seq 1');
    is(describe(@got[1 .. $#got]), '1 2', '... then the new epoch\'s 1 2: nothing lost silently');
    is_deeply([map { $_->{data}{i} } @got[1 .. $#got]], [4, 5], '... which are messages 4 and 5');
    pub($fc, 6);
    is(describe(frames_after($ws, seq => 3)), '3', 'then live again: 3');
    ok(!$ws->recv_json(timeout => 0.5), 'nothing twice');

    # the quiet channel: nothing published after the loss, so nothing is
    # owed yet (a subscribe creates no state); the next publish makes a
    # new epoch and the subscriber is told before its data
    ok(!$q->recv_json(timeout => 2.5), 'a quiet channel: nothing while nothing is published');
    my $qr = pub($qc, 2);
    my $qm = $q->recv_json(timeout => 4);
    is($qm && $qm->{type}, 'reset', 'the next publish: reset first');
    isnt($qm && $qm->{epoch}, $qold, '... with a new epoch');
    is($qm && $qm->{epoch}, $qr->{epoch}, '... the epoch publishers now use');
    is(describe(frames_after($q, seq => 1)), '1', '... and the next message, seq 1, arrives');

    # a client resuming with the old epoch learns it too
    my $late = client();
    $late->subscribe([$fc], since => { $fc => { seq => 3, epoch => $old } });
    is(describe(frames_after($late, seq => 3)), 'reset(1) 1 2 3',
       'resume with the lost epoch: reset(1), then the new epoch from 1');
    $_->close for $ws, $q, $late;
}

# --- a publisher under way, clients joining at different moments ----------------------

my $lc = 'stock_updates:LIVE';
my $N = 300;
my $pid = fork // die "fork: $!";
if ($pid == 0) {
    my $bad = 0;
    for my $i (1 .. $N) {
        my $res = Insite::WS->publish($port, $lc, { type => 'tick', data => { i => $i } });
        $bad++ unless ($res->{status} // 0) == 201 && $res->{json}{seq} == $i;
        sleep 0.004;
    }
    POSIX::_exit($bad ? 1 : 0);
}

# The clients: [join when the first client has seen this seq, since]
my @plan = ([0, undef], [30, 'bare'], [60, 'epoch'], [90, 'zero'], [120, 'none'],
            [150, 'bare'], [200, 'old'], [240, 'epoch']);
my (@clients, $epoch);
my $watch = client();
my $ws0 = $watch->subscribe([$lc], since => { $lc => 0 });
$epoch = $ws0->{channels}{$lc}{epoch};
push @clients, { ws => $watch, since => 0, seqs => [], name => 'from the start' };
my $seen = 0;
my $deadline = time + 25;
my $publisher_done;
my %pending;
while (time < $deadline) {
    for my $c (@clients) {
        for my $f ($c->{ws}->pump) {
            next unless $f->{opcode} == 1;
            my $m = $JSON->decode($f->{payload});
            if ($m->{type} eq 'subscribed') {
                $c->{subscribed} = $m;
                $c->{start} = $m->{channels}{$lc}{seq} unless defined $c->{since};
                next;
            }
            if ($m->{type} ne 'tick') { push @{ $c->{other} }, $m; next }
            push @{ $c->{seqs} }, $m->{seq};
        }
    }
    $seen = $clients[0]{seqs}[-1] // 0;
    for my $p (@plan[1 .. $#plan]) {
        next if $p->[2] || $seen < $p->[0];
        $p->[2] = 1;
        my $ws = client();
        my ($since, $name);
        my $at = $seen;
        if ($p->[1] eq 'bare') { $since = $at - 10; $name = "bare since $since" }
        elsif ($p->[1] eq 'epoch') { $since = $at - 5; $name = "since {seq $since, epoch}" }
        elsif ($p->[1] eq 'zero') { $since = 0; $name = 'since 0' }
        elsif ($p->[1] eq 'old') { $since = $at - 150; $name = "since $since (far back)" }
        else { $name = "no since (joined at ~$at)" }
        my $req = { op => 'subscribe', channels => [$lc] };
        $req->{since} = { $lc => $p->[1] eq 'epoch' ? { seq => $since, epoch => $epoch } : $since }
            if defined $since;
        $ws->send_json($req);
        push @clients, { ws => $ws, since => $since, seqs => [], name => $name };
    }
    if (!$publisher_done && waitpid($pid, POSIX::WNOHANG()) == $pid) {
        $publisher_done = 1;
        is($? >> 8, 0, "the publisher published $N messages, seq = i");
    }
    last if $publisher_done && !grep { ($_->{seqs}[-1] // 0) < $N } @clients;
    IO::Select->new(map { $_->{ws}->sock } @clients)->can_read(0.05);
}
ok($publisher_done, 'the publisher finished') or kill 'KILL', $pid;
is(scalar @clients, scalar @plan, scalar(@plan) . ' clients joined');
for my $c (@clients) {
    my $from = defined $c->{since} ? $c->{since} + 1 : ($c->{start} // -1) + 1;
    ok($c->{subscribed} || $c == $clients[0], "$c->{name}: subscribed");
    is(Insite::WS->seq_problem($c->{seqs}, $from, $N), '',
       "$c->{name}: every seq from $from to $N, once, in order ("
       . scalar(@{ $c->{seqs} }) . ' messages)');
    ok(!$c->{other}, "$c->{name}: no reset or error")
        or diag $JSON->encode($c->{other});
}

my $st = $JSON->decode($ngx->get('/status')->{body});
cmp_ok($st->{messages}{replayed}, '>', 0, 'status: replays counted');
cmp_ok($st->{resets}, '>=', 6, 'status: resets counted');

$ngx->stop;
$ngx->check_log;

done_testing;
