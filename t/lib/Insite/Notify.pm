package Insite::Notify;

# insite-notify under test (t/600-*.t): its own PostgreSQL schema (so test
# files never see each other's rows), its own Kafka consumer group, the
# harness's Redis and Kafka mock.
#
#   my $n = Insite::Notify->new(tag => 't601', env => { ... });
#   my ($status, $json) = $n->api(POST => '/api/v1/alerts/rules', 'alice', {...});
#   $n->stock('SYM', 201.5, $epoch_s, $volume);     # a stock_update to Kafka
#   $n->sentiment('SYM', 0.42, $epoch_s);
#   $n->sql("SELECT ...");                           # psql -qtA in the schema
#   $n->history('alice');                            # alert:alice messages in Redis
#   $n->kill9; $n->start(%more_env); $n->stop;
#   my ($smtp, $hook) = $n->peers($secret, 'ok');   # t/lib/notify_peers.py

use strict;
use warnings;

use Cwd qw(getcwd);
use File::Temp ();
use JSON::PP ();
use POSIX ();
use Time::HiRes qw(time sleep);

use Insite::Services qw(free_port wait_port http_request run_cmd spawn);

my $JSON = JSON::PP->new->utf8->canonical->allow_nonref;

sub json { $JSON }

sub needs {
    for my $v (qw(INSITE_PG_DSN INSITE_KAFKA_BOOTSTRAP INSITE_REDIS_PORT)) {
        return "$v not set (run under scripts/test.sh or source build/run/services.env)"
            unless $ENV{$v};
    }
    my $bin = bin();
    return "$bin not built" unless -x $bin;
    return undef;
}

sub bin {
    my $root = getcwd();
    my $b = $ENV{INSITE_NOTIFY_BIN} // "$root/build/bin/insite-notify";
    return $b =~ m{^/} ? $b : "$root/$b";
}

sub new {
    my ($class, %o) = @_;
    my $tag = ($o{tag} // 'tn') . "_$$";
    my $self = bless {
        tag => $tag, tmp => File::Temp::tempdir("insite-notify-XXXXXX", TMPDIR => 1, CLEANUP => 1),
        base_env => $o{env} // {}, pid => undef,
    }, $class;
    $self->{schema} = lc "n$tag";
    $self->{admin_dsn} = $ENV{INSITE_PG_DSN};
    $self->psql_admin("DROP SCHEMA IF EXISTS $self->{schema} CASCADE; CREATE SCHEMA $self->{schema}");
    my $sep = $ENV{INSITE_PG_DSN} =~ /\?/ ? '&' : '?';
    $self->{dsn} = "$ENV{INSITE_PG_DSN}${sep}options=-csearch_path%3D$self->{schema}";
    $self->{log} = "$self->{tmp}/notify.log";
    $self->start unless $o{no_start};
    return $self;
}

sub tag  { $_[0]{tag} }
sub port { $_[0]{port} }
sub log_text { my $s = shift; local (@ARGV, $/) = ($s->{log}); my $t = <>; $t // '' }
sub tmp  { $_[0]{tmp} }

sub env {
    my ($self, %more) = @_;
    $self->{port} //= free_port();
    return {
        INSITE_PG_DSN => $self->{dsn},
        INSITE_PG_MIGRATIONS_DIR => getcwd() . '/workers/migrations',
        INSITE_NOTIFY_TEMPLATES_DIR => getcwd() . '/workers/notify/templates',
        INSITE_NOTIFY_HTTP_PORT => $self->{port},
        INSITE_NOTIFY_CONSUMER_GROUP => "notify-$self->{tag}",
        INSITE_KAFKA_BOOTSTRAP => $ENV{INSITE_KAFKA_BOOTSTRAP},
        INSITE_KAFKA_LINGER => '5ms',
        INSITE_KAFKA_SPOOL_DIR => "$self->{tmp}/spool",
        INSITE_KAFKA_CLIENT_ID => "notify-$self->{tag}",
        INSITE_REDIS_PORT => $ENV{INSITE_REDIS_PORT},
        INSITE_NOTIFY_RETRY_BACKOFF => '200ms',
        INSITE_NOTIFY_SESSION_TIMEOUT => '6s',     # a killed member's partitions move soon
        %{ $self->{base_env} }, %more,
    };
}

sub start {
    my ($self, %more) = @_;
    $self->{pid} = spawn(bin(), $self->env(%more), $self->{log});
    wait_port($self->{port}, 30) or die "insite-notify did not listen:\n" . $self->log_text;
    return $self;
}

sub kill9 {
    my ($self) = @_;
    my $pid = delete $self->{pid} or return;
    kill 'KILL', $pid;
    waitpid($pid, 0);
}

# waits for an exit the worker caused itself (test hook)
sub reap {
    my ($self, $secs) = @_;
    my $pid = $self->{pid} or return 1;
    my $deadline = time + ($secs // 20);
    while (time < $deadline) {
        if (waitpid($pid, POSIX::WNOHANG()) == $pid) {
            delete $self->{pid};
            return 1;
        }
        sleep 0.05;
    }
    return 0;
}

sub stop {
    my ($self) = @_;
    my $pid = delete $self->{pid} or return;
    kill 'TERM', $pid;
    my $deadline = time + 15;
    while (time < $deadline) {
        return if waitpid($pid, POSIX::WNOHANG()) == $pid;
        sleep 0.05;
    }
    kill 'KILL', $pid;
    waitpid($pid, 0);
}

sub DESTROY {
    my ($self) = @_;
    local ($?, $@, $!);
    $self->stop;
    kill 'TERM', @{ $self->{peers} } if $self->{peers};
    eval { $self->psql_admin("DROP SCHEMA IF EXISTS $self->{schema} CASCADE") }
        unless $ENV{INSITE_KEEP_SCHEMA};
}

sub api {
    my ($self, $method, $path, $user, $body, %h) = @_;
    my %headers = (%h);
    $headers{'X-User-Id'} = $user if defined $user;
    $headers{'Content-Type'} = 'application/json' if defined $body;
    my $r = http_request($self->{port}, $method, $path, headers => \%headers,
                         body => defined $body ? (ref $body ? $JSON->encode($body) : $body) : undef,
                         timeout => 15);
    my $j = eval { $JSON->decode($r->{body} // '') };
    return ($r->{status} // 0, $j, $r);
}

sub psql_admin {
    my ($self, $sql) = @_;
    my ($o, $rc) = run_cmd(30, 'psql', $self->{admin_dsn}, '-X', '-qtA', '-v', 'ON_ERROR_STOP=1', '-c', $sql);
    die "psql: $o" if $rc;
    chomp $o;
    return $o;
}

sub sql {
    my ($self, $sql) = @_;
    my ($o, $rc) = run_cmd(30, 'psql', $self->{dsn}, '-X', '-qtA', '-v', 'ON_ERROR_STOP=1', '-c', $sql);
    die "psql: $o" if $rc;
    chomp $o;
    return $o;
}

sub produce {
    my ($self, $topic, @msgs) = @_;       # [key, hashref]...
    my $file = "$self->{tmp}/produce.txt";
    open my $fh, '>', $file or die;
    print $fh "$_->[0]|" . $JSON->encode($_->[1]) . "\n" for @msgs;
    close $fh;
    my ($o, $rc) = run_cmd(30, 'sh', '-c', "kcat -P -b '$ENV{INSITE_KAFKA_BOOTSTRAP}' -t '$topic' -K '|' < '$file'");
    die "kcat: $o" if $rc;
}

sub iso {
    my ($t) = @_;
    my @g = gmtime(int $t);
    return sprintf('%04d-%02d-%02dT%02d:%02d:%02d.%03dZ', $g[5] + 1900, $g[4] + 1, $g[3],
                   $g[2], $g[1], $g[0], int(($t - int $t) * 1000 + 0.5));
}

sub envelope {
    my ($type, $data) = @_;
    return { event_type => $type, event_id => sprintf('%08x-0000-4000-8000-%012x', $$, int(rand(2**40))),
             source_service => 'test', timestamp => iso(time), version => '1.0', data => $data };
}

# stock_update(s): [$sym, $price, $epoch_s, $volume?]...
sub stock {
    my ($self, @u) = @_;
    $self->produce('stock_updates', map {
        my ($s, $p, $t, $v) = @$_;
        [$s, envelope('stock_update', { symbol => $s, price => $p + 0.0, volume => $v,
                                        currency => 'USD', market_time => iso($t), source => 'test' })]
    } @u);
}

sub sentiment {
    my ($self, @u) = @_;
    $self->produce('sentiment_updates', map {
        my ($s, $c, $t) = @$_;
        [$s, envelope('sentiment_update', { symbol => $s, window => '1h', compound => $c + 0.0,
                                            positive => 1, negative => 0, neutral => 0,
                                            mentions => 1, ts => iso($t) })]
    } @u);
}

# the alert:<user> channel's history in Redis: decoded messages, in order
sub history {
    my ($self, $user) = @_;
    my ($o) = run_cmd(10, $Insite::Services::RedisCli, '-p', $ENV{INSITE_REDIS_PORT},
                      'ZRANGE', "insite:{alert:$user}:hist", 0, -1);
    return map { $JSON->decode($_) } grep { /^\{/ } split /\n/, $o;
}

# Why the e-mail/webhook peers cannot run ("" when they can).
sub peers_missing {
    my ($chk) = run_cmd(10, '/usr/bin/python3', '-c', 'import aiosmtpd');
    return $chk =~ /Error/ ? "python3-aiosmtpd missing: $chk" : '';
}

# The SMTP server (messages -> tmp/mail/<n>.eml) and the webhook receiver
# (requests -> tmp/hook.log; $mode 'ok' = no first 500) of
# t/lib/notify_peers.py, on free ports; stopped with the object.
sub peers {
    my ($self, $secret, @mode) = @_;
    my $tmp = $self->{tmp};
    mkdir "$tmp/mail";
    my ($smtp_port, $hook_port) = (free_port(), free_port());
    for my $cmd ([smtp => $smtp_port, "$tmp/mail"], [webhook => $hook_port, $secret, "$tmp/hook.log", @mode]) {
        my $pid = fork // die "fork: $!";
        if ($pid == 0) {
            open STDOUT, '>>', "$tmp/peers.log"; open STDERR, '>&', \*STDOUT;
            exec '/usr/bin/python3', 't/lib/notify_peers.py', @$cmd or POSIX::_exit(127);
        }
        push @{ $self->{peers} }, $pid;
    }
    wait_port($smtp_port, 20) && wait_port($hook_port, 20) or die "notify peers did not start";
    return ($smtp_port, $hook_port);
}

sub wait_for {
    my ($secs, $cond) = @_;
    my $deadline = time + $secs;
    while (time < $deadline) {
        my $v = $cond->();
        return $v if $v;
        sleep 0.1;
    }
    return $cond->();
}

1;
