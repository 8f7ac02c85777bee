package Insite::WS;

# A small RFC 6455 client for tests: it can send what a browser sends and
# also what a broken client sends (unmasked frames, reserved bits, bad UTF-8,
# raw bytes), and it reads frames exactly as they come off the wire.
#
#   my $ws = Insite::WS->connect($port, path => '/ws', headers => [...]);
#   $ws->send_json({op => 'subscribe', channels => ['a']});
#   my $msg = $ws->recv_json(timeout => 2);      # next text frame, decoded
#   my $f = $ws->recv_frame(timeout => 2);       # {opcode, fin, payload}
#   my ($code, $reason) = $ws->expect_close;     # waits for a close frame
#
# Also: connect(..., rcvbuf => 4096) (a small receive window, for slow
# consumers); pump (non-blocking: the frames that have arrived); subscribe;
# collect; send_ping; server_pid (the nginx worker holding the connection);
# Insite::WS->publish($port, $channel, $body, key => ...); ->wait_ready($port);
# ->publish_lua and ->publish_script_args($channel, ...) (lua/publish.lua
# straight to Redis, as the workers call it);
# ->seq_problem(\@seqs, $first, $last); ->log_tail($nginx); and
# Insite::WS::Follower below, a client that reconnects and resumes.
# JSON is UTF-8 on the wire: recv_json returns character strings.

use strict;
use warnings;

use IO::Socket::INET ();
use IO::Select ();
use Socket ();
use Digest::SHA qw(sha1_base64);
use MIME::Base64 qw(encode_base64);
use JSON::PP ();
use Time::HiRes ();

use Insite::Services ();

my $JSON = JSON::PP->new->utf8->canonical;

sub connect {
    my ($class, $port, %o) = @_;
    my $sock;
    if ($o{rcvbuf}) {
        # a small receive window: a client that stops reading fills the
        # server's socket quickly (set before connect, or it is not honoured)
        $sock = IO::Socket::INET->new(Proto => 'tcp')
            or die "socket: $!\n";
        setsockopt($sock, Socket::SOL_SOCKET(), Socket::SO_RCVBUF(),
                   pack('i', $o{rcvbuf})) or die "SO_RCVBUF: $!\n";
        my $addr = Socket::inet_aton($o{addr} // '127.0.0.1');
        $sock->connect(Socket::pack_sockaddr_in($port, $addr))
            or die "connect to $port: $!\n";
    } else {
        $sock = IO::Socket::INET->new(PeerAddr => $o{addr} // '127.0.0.1',
                                      PeerPort => $port, Proto => 'tcp',
                                      Timeout => 3)
            or die "connect to $port: $!\n";
    }
    $sock->autoflush(1);
    binmode $sock;
    my $self = bless { sock => $sock, buf => '', port => $port }, $class;
    return $self if $o{no_handshake};

    my $key = $o{key} // encode_base64(join('', map { chr int rand 256 } 1 .. 16), '');
    my $path = $o{path} // '/ws';
    my $req = "GET $path HTTP/1.1\r\nHost: 127.0.0.1:$port\r\n"
            . "Upgrade: websocket\r\nConnection: Upgrade\r\n"
            . "Sec-WebSocket-Key: $key\r\nSec-WebSocket-Version: 13\r\n";
    my @h = @{ $o{headers} // [] };
    while (my ($k, $v) = splice @h, 0, 2) { $req .= "$k: $v\r\n" }
    $req .= "\r\n";
    $req .= $o{after_handshake} if defined $o{after_handshake};
    $self->write_raw($req);

    my $head = $self->read_until("\r\n\r\n", $o{timeout} // 3)
        // die "no handshake response\n";
    my ($status) = $head =~ m{^HTTP/1\.1 (\d+)};
    $self->{status} = $status;
    $self->{response_head} = $head;
    if (($status // 0) != 101) {
        # the JSON body of a refusal
        my ($len) = $head =~ /^Content-Length:\s*(\d+)/mi;
        $self->{body} = defined $len ? $self->read_n($len, 3) : '';
        return $self;
    }
    my $want = sha1_base64($key . '258EAFA5-E914-47DA-95CA-C5AB0DC85B11') . '=';
    my ($accept) = $head =~ /^Sec-WebSocket-Accept:\s*(\S+)/mi;
    die "bad Sec-WebSocket-Accept: got " . ($accept // 'none') . ", want $want\n"
        unless ($accept // '') eq $want;
    return $self;
}

sub status { $_[0]{status} }
sub head   { $_[0]{response_head} }
sub body   { $_[0]{body} }
sub sock   { $_[0]{sock} }

sub write_raw {
    my ($self, $data) = @_;
    my $off = 0;
    while ($off < length $data) {
        my $n = syswrite($self->{sock}, $data, length($data) - $off, $off);
        return 0 unless defined $n;
        $off += $n;
    }
    return 1;
}

sub _fill {
    my ($self, $deadline) = @_;
    my $left = $deadline - Time::HiRes::time();
    return 0 if $left <= 0;
    my $sel = IO::Select->new($self->{sock});
    return 0 unless $sel->can_read($left);
    my $n = sysread($self->{sock}, $self->{buf}, 65536, length $self->{buf});
    $self->{eof} = 1 if defined $n && $n == 0;
    return $n ? 1 : 0;
}

sub read_until {
    my ($self, $marker, $timeout) = @_;
    my $deadline = Time::HiRes::time() + $timeout;
    while ((my $i = index $self->{buf}, $marker) < 0) {
        return undef unless $self->_fill($deadline);
    }
    my $i = index $self->{buf}, $marker;
    return substr($self->{buf}, 0, $i + length $marker, '');
}

sub read_n {
    my ($self, $n, $timeout) = @_;
    my $deadline = Time::HiRes::time() + $timeout;
    while (length $self->{buf} < $n) {
        return undef unless $self->_fill($deadline);
    }
    return substr($self->{buf}, 0, $n, '');
}

# frame(opcode, payload, fin => 1, mask => 1, rsv => 0, len_override)
sub frame {
    my ($opcode, $payload, %o) = @_;
    my $fin = $o{fin} // 1;
    my $mask = $o{mask} // 1;
    my $b0 = ($fin ? 0x80 : 0) | (($o{rsv} // 0) << 4) | $opcode;
    my $len = length $payload;
    my $h = chr($b0);
    my $mbit = $mask ? 0x80 : 0;
    if ($len < 126) { $h .= chr($mbit | $len) }
    elsif ($len < 65536) { $h .= chr($mbit | 126) . pack('n', $len) }
    else { $h .= chr($mbit | 127) . pack('Q>', $len) }
    return $h . $payload unless $mask;
    my $key = join '', map { chr int rand 256 } 1 .. 4;
    my $masked = $payload ^ substr($key x (int($len / 4) + 1), 0, $len);
    return $h . $key . $masked;
}

sub send_frame {
    my ($self, $opcode, $payload, %o) = @_;
    return $self->write_raw(frame($opcode, $payload // '', %o));
}

sub send_text { my ($s, $t, %o) = @_; $s->send_frame(1, $t, %o) }

sub send_json {
    my ($self, $obj) = @_;
    return $self->send_text($JSON->encode($obj));
}

sub send_close {
    my ($self, $code, $reason) = @_;
    my $p = defined $code ? pack('n', $code) . ($reason // '') : '';
    return $self->send_frame(8, $p);
}

# next frame: { opcode, fin, payload, masked } or undef on timeout/EOF
sub recv_frame {
    my ($self, %o) = @_;
    my $deadline = Time::HiRes::time() + ($o{timeout} // 3);
    for (;;) {
        my $f = $self->_parse_frame;
        return $f if $f;
        return undef if $self->{eof};
        return undef unless $self->_fill($deadline);
    }
}

# one complete frame off the front of the buffer, or undef
sub _parse_frame {
    my ($self) = @_;
    my $buf = $self->{buf};
    return undef if length $buf < 2;
    my ($b0, $b1) = unpack 'CC', $buf;
    my $len = $b1 & 0x7f;
    my $off = 2;
    if ($len == 126) {
        return undef if length $buf < 4;
        $len = unpack 'n', substr($buf, 2, 2);
        $off = 4;
    } elsif ($len == 127) {
        return undef if length $buf < 10;
        $len = unpack 'Q>', substr($buf, 2, 8);
        $off = 10;
    }
    my $masked = $b1 & 0x80;
    $off += 4 if $masked;
    return undef if length $buf < $off + $len;
    my $payload = substr($buf, $off, $len);
    substr($self->{buf}, 0, $off + $len, '');
    return { opcode => $b0 & 0x0f, fin => ($b0 >> 7) & 1,
             rsv => ($b0 >> 4) & 7, payload => $payload,
             masked => $masked ? 1 : 0 };
}

# Without blocking: reads what the socket has (once) and returns every
# complete frame now buffered. Sets ->eof when the peer closed.
sub pump {
    my ($self) = @_;
    if (!$self->{eof} && IO::Select->new($self->{sock})->can_read(0)) {
        my $n = sysread($self->{sock}, $self->{buf}, 262144, length $self->{buf});
        $self->{eof} = 1 if !$n;     # 0 = EOF; undef = reset: both end it
    }
    my @f;
    while (my $f = $self->_parse_frame) { push @f, $f }
    return @f;
}

sub eof { $_[0]{eof} }

# next text frame as a Perl structure, skipping pings
sub recv_json {
    my ($self, %o) = @_;
    for (;;) {
        my $f = $self->recv_frame(%o) // return undef;
        next if $f->{opcode} == 9 || $f->{opcode} == 10;
        return { _close => 1, _frame => $f } if $f->{opcode} == 8;
        return $JSON->decode($f->{payload});
    }
}

# waits for a close frame; returns (code, reason), or () when none came
sub expect_close {
    my ($self, %o) = @_;
    for (;;) {
        my $f = $self->recv_frame(%o) // return ();
        next unless $f->{opcode} == 8;
        return (1005, '') if length $f->{payload} == 0;
        my $code = unpack 'n', substr($f->{payload}, 0, 2);
        return ($code, substr($f->{payload}, 2));
    }
}

# true once the server has closed the TCP connection
sub wait_eof {
    my ($self, $timeout) = @_;
    my $deadline = Time::HiRes::time() + ($timeout // 3);
    while (!$self->{eof}) {
        $self->{buf} = '';
        last unless $self->_fill($deadline);
    }
    return $self->{eof} ? 1 : 0;
}

sub send_ping { my ($s, $p) = @_; $s->send_frame(9, $p // '') }

# subscribe and wait for the answer: returns the "subscribed" (or "error")
# frame, undef on timeout; frames other than the answer are kept in ->{early}
sub subscribe {
    my ($self, $channels, %o) = @_;
    my $req = { op => 'subscribe', channels => $channels };
    $req->{id} = $o{id} if defined $o{id};
    $req->{since} = $o{since} if defined $o{since};
    $self->send_json($req);
    my $deadline = Time::HiRes::time() + ($o{timeout} // 5);
    for (;;) {
        my $left = $deadline - Time::HiRes::time();
        return undef if $left <= 0;
        my $m = $self->recv_json(timeout => $left) // return undef;
        return $m if ($m->{type} // '') eq 'subscribed'
                  || ($m->{type} // '') eq 'error' || $m->{_close};
        push @{ $self->{early} }, $m;
    }
}

# text frames decoded until $o{until}->($msg) is true, $o{count} frames came
# or nothing came for $o{quiet} seconds (default 1); at most $o{timeout} s
sub collect {
    my ($self, %o) = @_;
    my @got;
    my $deadline = Time::HiRes::time() + ($o{timeout} // 10);
    my $quiet = $o{quiet} // 1;
    while (Time::HiRes::time() < $deadline) {
        my $left = $deadline - Time::HiRes::time();
        my $m = $self->recv_json(timeout => $left < $quiet ? $left : $quiet)
            // last;
        push @got, $m;
        last if $m->{_close};
        last if $o{count} && @got >= $o{count};
        last if $o{until} && $o{until}->($m);
    }
    return @got;
}

# the pid of the nginx process holding the server side of this connection
sub server_pid {
    my ($self) = @_;
    my $lport = $self->{sock}->sockport;
    my $out = `ss -tnpH state established '( dport = :$lport and sport = :$self->{port} )' 2>/dev/null`;
    return $out =~ /pid=(\d+)/ ? $1 : undef;
}

# POST a message through an insite_ws_publish location; returns
# { status, body, json (decoded or undef), headers, error }
sub publish {
    my ($class, $port, $channel, $body, %o) = @_;
    $body = $JSON->encode($body) if ref $body;
    my @h = ('Content-Type' => 'application/json');
    push @h, 'Idempotency-Key' => $o{key} if defined $o{key};
    my $res = Insite::Services::http_request(
        $port, 'POST', ($o{path} // '/pub') . "?channel=$channel",
        body => $body, headers => \@h, timeout => $o{timeout} // 5);
    $res->{json} = eval { $JSON->decode($res->{body}) }
        if ($res->{body} // '') =~ /^\{/;
    return $res;
}

# lua/publish.lua's text, for EVAL straight to Redis (read once)
my $publish_lua;
sub publish_lua {
    return $publish_lua //= do {
        my $path = ($ENV{INSITE_ROOT} // '.') . '/lua/publish.lua';
        open my $fh, '<', $path or die "$path: $!\n";
        local $/;
        <$fh>;
    };
}

# What follows the script in EVAL: numkeys, keys, arguments, in the layout
# insite_channel_publish_args() (ngx_insite_ws/insite_channel.c) builds and
# lua/publish.lua documents.  Options: type (tick), data ({}), ts, keep
# (history, 1000), epoch (the candidate), idem (an idempotency key), ttl.
sub publish_script_args {
    my ($class, $ch, %o) = @_;
    my @keys = ("insite:{$ch}:seq", "insite:{$ch}:hist",
                defined $o{idem} ? ("insite:{$ch}:idem:$o{idem}") : ());
    return (scalar @keys, @keys, $ch, $o{type} // 'tick', $o{data} // '{}',
            $o{ts} // '2026-11-26T10:30:45.123Z', $o{keep} // 1000,
            $o{epoch} // 'ffffffffffffffff', "insite:pub:$ch", $o{ttl} // 86400);
}

# Waits until Redis is connected in every worker (the status of whichever
# worker answers, many times in a row). True on success.
sub wait_ready {
    my ($class, $port, %o) = @_;
    my $path = $o{path} // '/status';
    my $deadline = Time::HiRes::time() + ($o{timeout} // 10);
    my $streak = 0;
    while (Time::HiRes::time() < $deadline) {
        my $res = Insite::Services::http_request($port, 'GET', $path,
                                                 timeout => 2);
        $streak = ($res->{body} // '')
                  =~ /"redis":\{"commands":"connected","pubsub":"connected"\}/
                ? $streak + 1 : 0;
        return 1 if $streak >= ($o{streak} // 12);
        Time::HiRes::sleep(0.02);
    }
    return 0;
}

# Seqs must be a contiguous run without repeats: returns '' when they are,
# else a description of the first problem.
sub seq_problem {
    my ($class, $seqs, $first, $last) = @_;
    return 'no messages' if !@$seqs && defined $first && $first <= ($last // 0);
    return '' unless @$seqs;
    return "starts at $seqs->[0], want $first"
        if defined $first && $seqs->[0] != $first;
    for my $i (1 .. $#$seqs) {
        my ($a, $b) = @$seqs[$i - 1, $i];
        next if $b == $a + 1;
        return $b == $a ? "duplicate $b" : $b < $a ? "$b after $a (out of order)"
             : "gap: " . ($a + 1) . ".." . ($b - 1) . " missing";
    }
    return "ends at $seqs->[-1], want $last"
        if defined $last && $seqs->[-1] != $last;
    return '';
}

# The last lines of an Insite::Nginx's error log worth reading (no debug
# or per-request info noise) for a diag when a test failed.
sub log_tail {
    my ($class, $ngx, $n) = @_;
    my @l = grep { !/\[debug\]|\[info\].*(epoll_wait|client \d+ closed)/ }
            split /\n/, $ngx->error_log;
    $n //= 40;
    return join "\n", @l > $n ? @l[-$n .. -1] : @l;
}

sub close { my $s = shift; close $s->{sock} }

sub json { $JSON }

# permessage-deflate (RFC 7692) without context takeover, as the server
# agrees: one message in, one out (the 00 00 ff ff tail stripped / put back)
sub deflate_message {
    my ($text) = @_;
    require Compress::Raw::Zlib;
    my ($d, $st) = Compress::Raw::Zlib::Deflate->new(
        -WindowBits => -15, -AppendOutput => 1);
    die "deflate init: $st\n" unless $d;
    my $out = '';
    $d->deflate($text, $out) == Compress::Raw::Zlib::Z_OK() or die "deflate\n";
    $d->flush($out, Compress::Raw::Zlib::Z_SYNC_FLUSH()) == Compress::Raw::Zlib::Z_OK()
        or die "deflate flush\n";
    $out =~ s/\x00\x00\xff\xff\z// or die "no sync-flush tail\n";
    return $out;
}

sub inflate_message {
    my ($data) = @_;
    require Compress::Raw::Zlib;
    my ($i, $st) = Compress::Raw::Zlib::Inflate->new(
        -WindowBits => -15, -AppendOutput => 1, -ConsumeInput => 1, -LimitOutput => 0);
    die "inflate init: $st\n" unless $i;
    my $in = $data . "\x00\x00\xff\xff";
    my $out = '';
    my $rc = $i->inflate($in, $out);
    return undef unless $rc == Compress::Raw::Zlib::Z_OK() || $rc == Compress::Raw::Zlib::Z_STREAM_END();
    return $out;
}

1;

package Insite::WS::Follower;

# A client that behaves like a well-written browser app: it follows channels
# across reconnects. On a close frame or a lost connection it reconnects and
# resubscribes with since = {seq: last seen, epoch}; on an "unavailable"
# error or a refused handshake it tries again shortly. Everything it sees is
# recorded, so a test can check "every seq exactly once" across connections.
#
#   my $f = Insite::WS::Follower->new(port => $p, channels => ['a'], name => 'c1');
#   $f->poll for ...;                 # non-blocking; call often
#   $f->seqs('a'); $f->closes; $f->resets; $f->connects; $f->pids;

use strict;
use warnings;
use Time::HiRes ();

sub new {
    my ($class, %o) = @_;
    my $self = bless {
        port      => $o{port},
        path      => $o{path} // '/ws',
        channels  => $o{channels},
        name      => $o{name} // 'follower',
        since     => {},      # channel => {seq, epoch}
        seqs      => {},      # channel => [seq, ...] in arrival order
        msgs      => {},      # channel => {seq => message}
        closes    => [],      # [code, reason]
        resets    => [],
        errors    => [],
        connects  => 0,
        pids      => [],      # server pid of each connection
        retry_at  => 0,
        ws        => undef,
        state     => 'down',  # down, subscribing, live
    }, $class;
    $self->{since}{$_} = { seq => $o{since} } for grep { defined $o{since} } @{ $o{channels} };
    $self->_connect;
    return $self;
}

sub name     { $_[0]{name} }
sub ws       { $_[0]{ws} }
sub seqs     { $_[0]{seqs}{ $_[1] } // [] }
sub msgs     { $_[0]{msgs}{ $_[1] } // {} }
sub last_seq { my $s = $_[0]{seqs}{ $_[1] }; $s && @$s ? $s->[-1] : 0 }
sub closes   { @{ $_[0]{closes} } }
sub close_times { @{ $_[0]{close_times} // [] } }
sub resets   { @{ $_[0]{resets} } }
sub errors   { @{ $_[0]{errors} } }
sub connects { $_[0]{connects} }
sub pids     { @{ $_[0]{pids} } }
sub live     { $_[0]{state} eq 'live' }
sub sock     { $_[0]{ws} ? $_[0]{ws}->sock : () }

sub _later {
    my ($self, $secs) = @_;
    $self->{ws}->close if $self->{ws};
    $self->{ws} = undef;
    $self->{state} = 'down';
    $self->{retry_at} = Time::HiRes::time() + $secs;
}

sub _connect {
    my ($self) = @_;
    my $ws = eval { Insite::WS->connect($self->{port}, path => $self->{path}) };
    if (!$ws || $ws->status != 101) {
        push @{ $self->{errors} }, 'handshake: ' . ($ws ? $ws->status : $@);
        return $self->_later(0.1);
    }
    $self->{ws} = $ws;
    $self->{connects}++;
    push @{ $self->{pids} }, $ws->server_pid // 0;
    $self->_subscribe;
}

sub _subscribe {
    my ($self) = @_;
    my %since;
    for my $ch (@{ $self->{channels} }) {
        my $s = $self->{since}{$ch} or next;
        $since{$ch} = defined $s->{epoch} ? { seq => $s->{seq}, epoch => $s->{epoch} }
                                          : $s->{seq};
    }
    $self->{ws}->send_json({ op => 'subscribe', id => "$self->{name}-$self->{connects}",
                             channels => $self->{channels},
                             (%since ? (since => \%since) : ()) });
    $self->{state} = 'subscribing';
}

# reads what has arrived, reconnects when due; returns the number of frames
sub poll {
    my ($self) = @_;
    if (!$self->{ws}) {
        $self->_connect if Time::HiRes::time() >= $self->{retry_at};
        return 0;
    }
    my $ws = $self->{ws};
    my @f = $ws->pump;
    for my $f (@f) {
        if ($f->{opcode} == 9) { $ws->send_frame(10, $f->{payload}); next }
        if ($f->{opcode} == 8) {
            my ($code, $reason) = length $f->{payload} >= 2
                ? (unpack('n', $f->{payload}), substr($f->{payload}, 2)) : (1005, '');
            push @{ $self->{closes} }, [$code, $reason];
            push @{ $self->{close_times} }, Time::HiRes::time();
            $ws->send_close($code == 1005 ? undef : $code);
            $self->_later(0);
            return scalar @f;
        }
        next unless $f->{opcode} == 1;
        my $m = eval { Insite::WS::json()->decode($f->{payload}) };
        if (!$m) { push @{ $self->{errors} }, "not JSON: $f->{payload}"; next }
        my $t = $m->{type} // '';
        if ($t eq 'subscribed') {
            $self->{state} = 'live';
            for my $ch (keys %{ $m->{channels} }) {
                my $s = $self->{since}{$ch} //= { seq => $m->{channels}{$ch}{seq} };
                $s->{epoch} //= $m->{channels}{$ch}{epoch};
            }
        } elsif ($t eq 'reset') {
            push @{ $self->{resets} }, $m;
            $self->{since}{ $m->{channel} } = { seq => $m->{first_seq} - 1, epoch => $m->{epoch} };
        } elsif ($t eq 'error') {
            push @{ $self->{errors} }, "$m->{code}: $m->{message}";
            # Redis not reachable: subscribe again a little later
            $self->_later(0.2) if $self->{state} eq 'subscribing';
            return scalar @f;
        } elsif (defined $m->{seq} && defined $m->{channel}) {
            push @{ $self->{seqs}{ $m->{channel} } }, $m->{seq};
            $self->{msgs}{ $m->{channel} }{ $m->{seq} } //= $m;
            $self->{since}{ $m->{channel} }{seq} = $m->{seq};
        }
    }
    $self->_later(0.05) if $ws->eof;
    return scalar @f;
}

# Polls every follower until $until->() is true or $secs pass; between polls
# runs $tick->() if given. Returns true if $until was met.
sub run_until {
    my ($class, $followers, $secs, $until, $tick) = @_;
    my $deadline = Time::HiRes::time() + $secs;
    while (Time::HiRes::time() < $deadline) {
        $_->poll for @$followers;
        $tick->() if $tick;
        return 1 if $until->();
        my @socks = map { $_->sock } @$followers;
        if (@socks) { IO::Select->new(@socks)->can_read(0.02) }
        else { Time::HiRes::sleep(0.02) }
    }
    return 0;
}

1;
