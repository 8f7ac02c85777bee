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

use strict;
use warnings;

use IO::Socket::INET ();
use IO::Select ();
use Digest::SHA qw(sha1_base64);
use MIME::Base64 qw(encode_base64);
use JSON::PP ();
use Time::HiRes ();

my $JSON = JSON::PP->new->canonical;

sub connect {
    my ($class, $port, %o) = @_;
    my $sock = IO::Socket::INET->new(PeerAddr => $o{addr} // '127.0.0.1',
                                     PeerPort => $port, Proto => 'tcp',
                                     Timeout => 3)
        or die "connect to $port: $!\n";
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
        my $buf = $self->{buf};
        if (length $buf >= 2) {
            my ($b0, $b1) = unpack 'CC', $buf;
            my $len = $b1 & 0x7f;
            my $off = 2;
            if ($len == 126) {
                goto MORE if length $buf < 4;
                $len = unpack 'n', substr($buf, 2, 2);
                $off = 4;
            } elsif ($len == 127) {
                goto MORE if length $buf < 10;
                $len = unpack 'Q>', substr($buf, 2, 8);
                $off = 10;
            }
            my $masked = $b1 & 0x80;
            $off += 4 if $masked;
            if (length $buf >= $off + $len) {
                my $payload = substr($buf, $off, $len);
                substr($self->{buf}, 0, $off + $len, '');
                return { opcode => $b0 & 0x0f, fin => ($b0 >> 7) & 1,
                         rsv => ($b0 >> 4) & 7, payload => $payload,
                         masked => $masked ? 1 : 0 };
            }
        }
      MORE:
        return undef if $self->{eof};
        return undef unless $self->_fill($deadline);
    }
}

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

sub close { my $s = shift; close $s->{sock} }

sub json { $JSON }

1;
