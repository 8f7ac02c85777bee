# ngx_http_insite_ws_module across servers and through Redis failures:
# two nginx instances on one Redis deliver the same sequence; Redis killed
# (SIGKILL) and restarted on its append-only file while a publisher keeps
# publishing with Idempotency-Key retries: every client sees every seq once,
# in order; the pub/sub connections alone killed: what was published
# meanwhile is repaired from history and counted.
use strict;
use warnings;
use lib 't/lib';
use Test::More;
use Time::HiRes qw(time sleep);
use JSON::PP ();
use POSIX ();
use File::Temp ();
use IO::Select ();
use IO::Socket::INET ();
use Insite::Services qw(start_redis http_request);
use Insite::Nginx;
use Insite::WS;

my $JSON = JSON::PP->new->utf8->canonical;
my $redis = start_redis(args => ['--appendonly', 'yes', '--appendfsync', 'always']);
my $rport = $redis->port;

my %conf = (
    http   => "    insite_redis 127.0.0.1:$rport connect_timeout=500ms command_timeout=1s;\n"
            . "    insite_ws_check_interval 300ms;\n"
            . "    insite_ws_shutdown_spread 100ms;",
    server => "        location /ws { insite_ws; }\n"
            . "        location /pub { insite_ws_publish; }\n"
            . "        location /status { insite_ws_status; }\n"
            . "        location = /metrics { insite_metrics; }",
);
my $A = Insite::Nginx->new(%conf);
my $B = Insite::Nginx->new(%conf);
ok(Insite::WS->wait_ready($A->port), 'nginx A: Redis connected');
ok(Insite::WS->wait_ready($B->port), 'nginx B: Redis connected');

END {
    for my $n (grep { $_ && $_->pid } $A, $B) {
        diag "error log of nginx on " . $n->port . ":\n" . Insite::WS->log_tail($n, 40)
            unless Test::More->builder->is_passing;
    }
}

sub followers {
    my ($ch, $tag) = @_;
    my @f;
    for my $n ($A, $A, $B, $B) {
        push @f, Insite::WS::Follower->new(port => $n->port, channels => [$ch],
                                           name => "$tag-" . (@f + 1) . '@' . ($n == $A ? 'A' : 'B'));
    }
    ok(Insite::WS::Follower->run_until(\@f, 5, sub { !grep { !$_->live } @f }),
       "$tag: 4 clients subscribed, 2 on each nginx");
    return @f;
}

# A child that publishes messages $from..$to to $ch, alternating between the
# two servers, each with Idempotency-Key "$ch-$i", retrying until accepted.
# Writes "i seq duplicate attempts" lines to the returned file.
sub publisher {
    my ($ch, $from, $to, $pause) = @_;
    my $out = File::Temp->new(TEMPLATE => 'insite-pub-XXXXXX', TMPDIR => 1);
    my $pid = fork // die "fork: $!";
    return ($pid, $out) if $pid;
    open my $fh, '>', $out->filename or POSIX::_exit(2);
    $fh->autoflush(1);
    my @ports = ($A->port, $B->port);
    for my $i ($from .. $to) {
        my ($res, $tries) = (undef, 0);
        my $give_up = time + 20;
        while (time < $give_up) {
            $tries++;
            $res = Insite::WS->publish($ports[($i + $tries) % 2], $ch,
                                       { type => 'tick', data => { i => $i } },
                                       key => "$ch-$i", timeout => 3);
            last if ($res->{status} // 0) == 201 || ($res->{status} // 0) == 200;
            sleep 0.05;
        }
        my $ok = ($res->{status} // 0) =~ /^20[01]$/;
        print $fh "$i " . ($ok ? $res->{json}{seq} : 'FAILED') . ' '
                . ($ok && $res->{json}{duplicate} ? 1 : 0) . " $tries\n";
        POSIX::_exit(1) unless $ok;
        sleep $pause if $pause;
    }
    close $fh;
    POSIX::_exit(0);
}

sub published {
    my ($file) = @_;
    open my $fh, '<', $file->filename or return {};
    my %r;
    while (<$fh>) { my ($i, $seq, $dup, $tries) = split; $r{$i} = [$seq, $dup, $tries] }
    return \%r;
}

sub check_followers {
    my ($tag, $ch, $n, @f) = @_;
    for my $f (@f) {
        is(Insite::WS->seq_problem($f->seqs($ch), 1, $n), '',
           $f->name . ": every seq 1..$n exactly once, in order");
        my $msgs = $f->msgs($ch);
        my @wrong = grep { ($msgs->{$_}{data}{i} // -1) != $_ } 1 .. $n;
        is(scalar @wrong, 0, $f->name . ': seq i carries message i')
            or diag "first wrong: seq $wrong[0]";
        is(scalar $f->resets, 0, $f->name . ': no reset (nothing was lost)')
            or diag $JSON->encode([$f->resets]);
        is($f->connects, 1, $f->name . ': stayed connected');
    }
}

# --- two nginx instances, one sequence ---------------------------------------------------

{
    my $ch = 'stock_updates:CLUSTER';
    my @f = followers($ch, 'same');
    my %seen_seq;
    for my $i (1 .. 40) {
        my $n = $i % 2 ? $A : $B;
        my $r = Insite::WS->publish($n->port, $ch, { type => 'tick', data => { i => $i } });
        $seen_seq{$r->{json}{seq} // 'none'}++;
    }
    is_deeply([sort { $a <=> $b } keys %seen_seq], [1 .. 40],
              'publishing through both servers: seqs 1..40, one sequence');
    ok(Insite::WS::Follower->run_until(\@f, 10, sub { !grep { $_->last_seq($ch) < 40 } @f }),
       'every client reached seq 40');
    check_followers('same', $ch, 40, @f);
    my $ref = $f[0]->msgs($ch);
    my @diff = grep {
        my $m = $_->msgs($ch);
        grep { $JSON->encode($m->{$_} // {}) ne $JSON->encode($ref->{$_}) } 1 .. 40
    } @f[1 .. 3];
    is(scalar @diff, 0, 'clients of both servers got byte-identical messages (same ts, data)');
    $_->ws->close for @f;
}

# --- Redis killed and restarted mid-stream --------------------------------------------------

{
    my $ch = 'stock_updates:CRASH';
    my @f = followers($ch, 'crash');
    my $N = 120;
    my ($pid, $out) = publisher($ch, 1, $N, 0.01);
    my $killed;
    my $t0 = time;
    my $done = Insite::WS::Follower->run_until(\@f, 22,
        sub { !grep { $_->last_seq($ch) < $N } @f },
        sub {
            if (!$killed && keys(%{ published($out) }) >= 30) {
                $killed = time;
                $redis->kill9;
            }
            if ($killed && $killed > 1 && time - $killed > 1.5) {
                $redis->restart;
                $killed = 1;        # restarted
            }
        });
    ok($killed, 'Redis was killed mid-stream (after 30 messages) and restarted');
    waitpid $pid, 0;
    is($? >> 8, 0, 'the publisher got every message accepted (with retries)');
    my $pub = published($out);
    is_deeply([map { $pub->{$_}[0] } 1 .. $N], [1 .. $N],
              "message i got seq i: each published exactly once, none lost by Redis");
    my $retried = grep { $pub->{$_}[2] > 1 } 1 .. $N;
    ok($retried, "some publishes were retried while Redis was down ($retried)");
    ok($done, "every client reached seq $N") or diag join ', ', map { $_->name . ': ' . $_->last_seq($ch) } @f;
    check_followers('crash', $ch, $N, @f);
    $_->ws->close for grep { $_->ws } @f;
}

# --- Redis frozen (SIGSTOP) mid-stream: commands time out, then it goes on -----------------

{
    ok(Insite::WS->wait_ready($A->port) && Insite::WS->wait_ready($B->port),
       'both servers connected again');
    my $ch = 'stock_updates:FREEZE';
    my @f = followers($ch, 'freeze');
    my $N = 80;
    my ($pid, $out) = publisher($ch, 1, $N, 0.01);
    my $frozen;
    my $done = Insite::WS::Follower->run_until(\@f, 22,
        sub { !grep { $_->last_seq($ch) < $N } @f },
        sub {
            if (!$frozen && keys(%{ published($out) }) >= 25) {
                $redis->freeze;
                $frozen = time;
            }
            if ($frozen && $frozen > 1 && time - $frozen > 2.5) {
                $redis->thaw;
                $frozen = 1;
            }
        });
    ok($frozen, 'Redis was frozen for 2.5 s mid-stream, then thawed');
    waitpid $pid, 0;
    is($? >> 8, 0, 'the publisher got every message accepted (with retries)');
    my $pub = published($out);
    is_deeply([map { $pub->{$_}[0] } 1 .. $N], [1 .. $N],
              'message i got seq i: a publish that timed out and was retried is not doubled');
    ok($done, "every client reached seq $N") or diag join ', ', map { $_->name . ': ' . $_->last_seq($ch) } @f;
    check_followers('freeze', $ch, $N, @f);
    $_->ws->close for grep { $_->ws } @f;
}

# --- while Redis is down: subscribe says unavailable, publish 503 ---------------------------

{
    ok(Insite::WS->wait_ready($A->port), 'nginx A connected again');
    my $c = Insite::WS->connect($A->port);
    $redis->kill9;
    my ($down, $deadline) = (0, time + 5);
    while (time < $deadline) {
        my $res = http_request($A->port, 'GET', '/status');
        $down++ if ($res->{body} // '') =~ /"commands":"(down|connecting)"/;
        last if $down >= 6;
        sleep 0.05;
    }
    cmp_ok($down, '>=', 6, 'status reports Redis down');
    my $res = Insite::WS->publish($A->port, 'stock_updates:DOWN', { data => 1 });
    is($res->{status}, 503, 'publish while Redis is down: 503');
    is($res->{headers}{'retry-after'}, '1', '... with Retry-After');
    is(ref $res->{json} && $res->{json}{error}, 'service_unavailable', '... and a JSON reason');
    my $answers = 0;
    for my $try (1 .. 6) {
        # whichever worker holds the connection, its Redis is down by now
        my $m = $c->subscribe(['stock_updates:DOWN'], id => "down$try");
        if ($m && $m->{type} eq 'error') {
            is($m->{code}, 'unavailable', 'subscribe while Redis is down: error unavailable');
            is($m->{id}, "down$try", '... with the id');
            $answers++;
            last;
        }
        sleep 0.2;
    }
    ok($answers, 'the subscribe was refused, not left hanging');
    $c->send_json({ op => 'ping', id => 'still' });
    is_deeply($c->recv_json(timeout => 3), { type => 'pong', id => 'still' },
              'the connection stays');
    $redis->restart;
    ok(Insite::WS->wait_ready($A->port), 'Redis back: connected');
    my $m = $c->subscribe(['stock_updates:DOWN'], id => 'up');
    is($m && $m->{type}, 'subscribed', 'subscribe works again on the same connection');
    $c->close;
}

# --- the pub/sub connections alone are killed ------------------------------------------------

# Sends several Redis commands in one write and returns their replies
# (integers and strings as scalars, arrays as array refs, errors as "ERR ...").
sub redis_pipeline {
    my ($port, @cmds) = @_;
    my $sock = IO::Socket::INET->new(PeerAddr => '127.0.0.1', PeerPort => $port,
                                     Proto => 'tcp', Timeout => 3) or die "redis: $!\n";
    binmode $sock;
    my $out = '';
    for my $c (@cmds) {
        $out .= '*' . @$c . "\r\n" . join('', map { '$' . length($_) . "\r\n$_\r\n" } @$c);
    }
    syswrite($sock, $out) == length $out or die "redis write: $!\n";
    my $buf = '';
    my $line = sub {
        while ((my $i = index $buf, "\r\n") < 0) {
            IO::Select->new($sock)->can_read(3) or die "redis: no reply\n";
            sysread($sock, $buf, 65536, length $buf) or die "redis: closed\n";
        }
        my $i = index $buf, "\r\n";
        my $l = substr $buf, 0, $i + 2, '';
        return substr $l, 0, -2;
    };
    my $read;
    $read = sub {
        my $l = $line->();
        my ($t, $v) = (substr($l, 0, 1), substr($l, 1));
        return $v if $t eq '+' || $t eq ':';
        return "ERR $v" if $t eq '-';
        if ($t eq '$') {
            return undef if $v < 0;
            while (length $buf < $v + 2) {
                IO::Select->new($sock)->can_read(3) or die "redis: no reply\n";
                sysread($sock, $buf, 65536, length $buf) or die "redis: closed\n";
            }
            my $s = substr $buf, 0, $v + 2, '';
            return substr $s, 0, $v;
        }
        return [map { $read->() } 1 .. $v] if $t eq '*';
        die "redis: unexpected reply $l\n";
    };
    my @r = map { $read->() } @cmds;
    close $sock;
    return @r;
}


sub gap_repairs {
    my $sum = 0;
    for my $n ($A, $B) {
        my ($v) = $n->get('/metrics')->{body} =~ /^insite_ws_gap_repairs_total (\d+)$/m;
        $sum += $v // 0;
    }
    return $sum;
}

{
    ok(Insite::WS->wait_ready($A->port) && Insite::WS->wait_ready($B->port),
       'both servers connected again');
    my $ch = 'stock_updates:PUBSUB';
    my @f = followers($ch, 'pubsub');
    for my $i (1 .. 5) {
        Insite::WS->publish($A->port, $ch, { type => 'tick', data => { i => $i } });
    }
    ok(Insite::WS::Follower->run_until(\@f, 5, sub { !grep { $_->last_seq($ch) < 5 } @f }),
       'before: 1..5 delivered');
    my $repairs_before = gap_repairs();

    # CLIENT KILL and 5 publishes (lua/publish.lua, as the workers run it)
    # in one pipeline: Redis runs them back to back, so these 5 are published
    # while no nginx worker is subscribed, however fast it reconnects
    my @cmds = (['CLIENT', 'KILL', 'TYPE', 'pubsub']);
    for my $i (6 .. 10) {
        push @cmds, ['EVAL', Insite::WS->publish_lua,
                     Insite::WS->publish_script_args($ch, data => qq({"i":$i}))];
    }
    my @replies = redis_pipeline($rport, @cmds);
    my $killed = $replies[0];
    cmp_ok($killed, '>=', 4, "CLIENT KILL TYPE pubsub: $killed connections (2 workers x 2 servers)");
    is_deeply([map { ref $_ ? $_->[0] : $_ } @replies[1 .. 5]], [6 .. 10],
              'the 5 messages published right behind the kill got seqs 6..10');
    # and through nginx right after
    my @status;
    for my $i (11 .. 15) {
        my $r = Insite::WS->publish($i % 2 ? $A->port : $B->port, $ch,
                                    { type => 'tick', data => { i => $i } });
        push @status, $r->{status} // 0;
    }
    is_deeply(\@status, [(201) x 5], 'publishing through nginx goes on (commands connection)');
    ok(Insite::WS::Follower->run_until(\@f, 8, sub { !grep { $_->last_seq($ch) < 15 } @f }),
       'the messages published while pub/sub was down reach every client');
    for my $i (16 .. 20) {
        Insite::WS->publish($B->port, $ch, { type => 'tick', data => { i => $i } });
    }
    ok(Insite::WS::Follower->run_until(\@f, 5, sub { !grep { $_->last_seq($ch) < 20 } @f }),
       'and live delivery continues');
    check_followers('pubsub', $ch, 20, @f);
    cmp_ok(gap_repairs() - $repairs_before, '>', 0,
           'insite_ws_gap_repairs_total counted the repairs');
    like($A->error_log . $B->error_log, qr/\(pubsub\): connection lost/,
         'the lost pub/sub connection is logged');
    $_->ws->close for @f;
}

$_->stop for $A, $B;
$A->check_log('nginx A: no alerts');
$B->check_log('nginx B: no alerts');

done_testing;
