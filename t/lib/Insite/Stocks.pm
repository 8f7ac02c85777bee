package Insite::Stocks;

# Shared set-up of the insite-stocks tests (t/500-t/509): a PostgreSQL
# schema and Redis prefix of the test's own, minute bars stored by the real
# insite-collector (yahoo feed) from recorded Yahoo chart responses served
# by an nginx, and the insite-stocks worker on a free port.
#
#   my $s = Insite::Stocks->new(tag => "st$$");
#   $s->feed(AAPL => $recorded_json, DSTX => $synthetic_json);   # runs the collector
#   $s->start_worker(%env);  $s->stop_worker;
#   $s->psql($sql); $s->redis(@args); $s->get($path, %headers)
#
# Needs INSITE_REDIS_PORT, INSITE_PG_DSN, INSITE_KAFKA_BOOTSTRAP (scripts/test.sh).

use strict;
use warnings;

use Cwd qw(getcwd);
use File::Temp ();
use JSON::PP ();
use POSIX ();
use Time::HiRes qw(time sleep);

use Insite::Nginx;
use Insite::Services qw(free_port wait_port http_request run_cmd);

sub new {
    my ($class, %o) = @_;
    my $root = getcwd();
    my $self = bless {
        tag  => $o{tag},
        root => $root,
        tmp  => File::Temp::tempdir("insite-stocks-XXXXXX", TMPDIR => 1, CLEANUP => 1),
        bin  => $ENV{INSITE_STOCKS_BIN} // "$root/build/bin/insite-stocks",
        cbin => $ENV{INSITE_COLLECTOR_BIN} // "$root/build/bin/insite-collector",
    }, $class;
    $self->{$_} = "$root/$self->{$_}" for grep { $self->{$_} !~ m{^/} } qw(bin cbin);
    chmod 0755, $self->{tmp};
    my $dsn = $ENV{INSITE_PG_DSN};
    $self->{dsn} = $dsn . ($dsn =~ /\?/ ? '&' : '?') . "options=-csearch_path%3D$o{tag}";
    $self->psql_raw("DROP SCHEMA IF EXISTS $o{tag} CASCADE; CREATE SCHEMA $o{tag};");
    return $self;
}

sub tmp { $_[0]{tmp} }
sub port { $_[0]{port} }

sub psql_raw {
    my ($self, $sql) = @_;
    my ($out, $rc) = run_cmd(30, 'psql', $ENV{INSITE_PG_DSN}, '-X', '-qtA', '-v', 'ON_ERROR_STOP=1',
                             '-c', $sql);
    die "psql: $out" if $rc;
    chomp $out;
    return $out;
}

sub psql { my ($self, $sql) = @_; $self->psql_raw("SET search_path TO $self->{tag}; $sql") }

sub redis {
    my ($self, @args) = @_;
    my ($out) = run_cmd(5, 'redis-cli', '-p', $ENV{INSITE_REDIS_PORT}, @args);
    chomp $out;
    return $out;
}

sub wait_for {
    my ($secs, $cond) = @_;
    my $deadline = time + $secs;
    while (time < $deadline) { return 1 if $cond->(); sleep 0.1 }
    return $cond->();
}

# Serves each symbol's chart response from an nginx and runs the collector
# (yahoo feed) until PostgreSQL holds every bar it should (%want: symbol =>
# row count), then stops it.
sub feed {
    my ($self, $charts, $want) = @_;
    my $conf = "        default_type application/json;\n";
    for my $sym (sort keys %$charts) {
        my $f = "$self->{tmp}/chart_$sym.json";
        open my $fh, '>', $f or die "$f: $!";
        print $fh $charts->{$sym};
        close $fh;
        chmod 0644, $f;
        $conf .= "        location = /v8/finance/chart/$sym { alias $f; }\n";
    }
    my $nginx = Insite::Nginx->new(server => $conf);
    my $api = free_port();
    my %env = (
        INSITE_PROVIDER_FEED => 'yahoo', INSITE_PROVIDER_YAHOO_URL => 'http://127.0.0.1:' . $nginx->port,
        INSITE_PROVIDER_RETRIES => 1, INSITE_COLLECTOR_SYMBOLS => join(',', sort keys %$charts),
        INSITE_COLLECTOR_INTERVAL => '500ms', INSITE_COLLECTOR_HTTP_PORT => $api,
        INSITE_COLLECTOR_SOURCE_SERVICE => "collector-$self->{tag}",
        INSITE_REDIS_PORT => $ENV{INSITE_REDIS_PORT}, INSITE_REDIS_PREFIX => "$self->{tag}:",
        INSITE_PG_DSN => $self->{dsn}, INSITE_PG_MIGRATIONS_DIR => "$self->{root}/workers/migrations",
        INSITE_KAFKA_BOOTSTRAP => $ENV{INSITE_KAFKA_BOOTSTRAP}, INSITE_KAFKA_LINGER => '5ms',
        INSITE_KAFKA_SPOOL_DIR => "$self->{tmp}/spool", INSITE_SOCIAL_RSS_ENABLED => 'false',
    );
    my $log = "$self->{tmp}/collector.log";
    my $pid = Insite::Services::spawn($self->{cbin}, \%env, $log);
    my $ok = wait_for(60, sub {
        for my $sym (keys %$want) {
            my $n = eval { $self->psql("SELECT count(*) FROM stock_prices WHERE symbol = '$sym'"
                                       . " AND interval = '1m'") } // 0;
            return 0 if $n < $want->{$sym};
        }
        return 1;
    });
    # the quote follows the bars in the same round
    wait_for(10, sub { $self->redis('EXISTS', "$self->{tag}:hist:stock_updates:" . (sort keys %$want)[0]) });
    kill 'TERM', $pid;
    waitpid $pid, 0;
    $nginx->stop;
    unless ($ok) {
        local (@ARGV, $/) = ($log);
        my $l = <>;
        die "collector did not store the bars:\n$l";
    }
}

sub start_worker {
    my ($self, %extra) = @_;
    $self->{port} //= free_port();
    my %env = (
        INSITE_STOCKS_HTTP_PORT => $self->{port},
        INSITE_REDIS_PORT => $ENV{INSITE_REDIS_PORT}, INSITE_REDIS_PREFIX => "$self->{tag}:",
        INSITE_PG_DSN => $self->{dsn}, INSITE_PG_MIGRATIONS_DIR => "$self->{root}/workers/migrations",
        %extra,
    );
    $self->{pid} = Insite::Services::spawn($self->{bin}, \%env, "$self->{tmp}/stocks.log");
    die "insite-stocks did not listen:\n" . $self->log unless wait_port($self->{port}, 15);
    return $self->{port};
}

sub stop_worker {
    my ($self) = @_;
    return unless $self->{pid};
    kill 'TERM', $self->{pid};
    waitpid $self->{pid}, 0;
    delete $self->{pid};
}

sub log { local (@ARGV, $/) = ("$_[0]{tmp}/stocks.log"); my $d = <>; $d // '' }

sub get {
    my ($self, $path, %h) = @_;
    return http_request($self->{port}, 'GET', $path, headers => \%h, timeout => 20);
}

# Changes minute rows with $sql and waits until the worker has applied the
# change notification to its bars cache (NOTIFY insite_stock_bars,
# migration 033): from then on no cached page shows the old rows.  1 when
# it has (within 10 s), else 0.
sub psql_change {
    my ($self, $sql) = @_;
    my $before = $self->counter('bars_cache_invalidations');
    $self->psql($sql);
    return wait_for(10, sub { $self->counter('bars_cache_invalidations') > $before }) ? 1 : 0;
}

# a counter of the worker's /metrics (insite_stocks_<name>_total)
sub counter {
    my ($self, $name) = @_;
    my $r = http_request($self->{port}, 'GET', '/metrics', timeout => 10);
    return $r->{body} =~ /^insite_stocks_${name}_total (\d+)/m ? $1 : -1;
}

# A Yahoo chart response of 1-minute bars for $sym over [$from, $to)
# (epoch seconds), deterministic prices; for days the recordings lack.
sub synthetic_chart {
    my ($sym, $from, $to) = @_;
    my (@t, @o, @h, @l, @c, @v);
    my $i = 0;
    for (my $ts = $from; $ts < $to; $ts += 60, $i++) {
        my $p = 100 + 10 * sin($i / 50) + ($i % 7) * 0.01;
        my $open = sprintf('%.2f', $p);
        my $close = sprintf('%.2f', $p + (($i * 37) % 11 - 5) * 0.01);
        push @t, $ts;
        push @o, $open + 0;
        push @c, $close + 0;
        push @h, sprintf('%.2f', ($open > $close ? $open : $close) + 0.05) + 0;
        push @l, sprintf('%.2f', ($open < $close ? $open : $close) - 0.05) + 0;
        push @v, 1000 + ($i * 7919) % 5000;
    }
    my $vol = 0;
    $vol += $_ for @v;
    return JSON::PP->new->canonical->encode({ chart => { error => undef, result => [ {
        meta => { currency => 'USD', symbol => $sym, exchangeName => 'NMS',
                  exchangeTimezoneName => 'America/New_York', regularMarketTime => $to,
                  regularMarketPrice => $c[-1], previousClose => 100, chartPreviousClose => 100,
                  regularMarketVolume => $vol, dataGranularity => '1m', range => '' },
        timestamp => \@t,
        indicators => { quote => [ { open => \@o, high => \@h, low => \@l, close => \@c,
                                     volume => \@v } ] },
    } ] } });
}

# The minute bars PostgreSQL holds for $sym in [$from, $to): [ts, o, h, l, c, v]
sub minute_bars {
    my ($self, $sym, $from, $to) = @_;
    my $rows = $self->psql("SELECT extract(epoch FROM ts)::bigint, open, high, low, close, volume"
        . " FROM stock_prices WHERE symbol = '$sym' AND interval = '1m'"
        . " AND ts >= to_timestamp($from) AND ts < to_timestamp($to) ORDER BY ts");
    return [ map { [ split /\|/ ] } grep { length } split /\n/, $rows ];
}

# OHLCV buckets of minute bars, computed here (not by the worker's SQL):
# 1m/5m/15m fixed widths from the Unix epoch, "1h" = hours of $tz's local
# clock from the session open ($open, minutes after local midnight, default
# 09:30: 09:30-10:30, ...), "1d" = local days of $tz.
sub aggregate {
    my ($bars, $interval, $tz, $open) = @_;
    my %w = ('1m' => 60, '5m' => 300, '15m' => 900);
    $open //= 9 * 60 + 30;
    my (%b, @order);
    local $ENV{TZ} = $tz // 'America/New_York';
    POSIX::tzset();
    for my $m (@$bars) {
        my ($ts, $o, $h, $l, $c, $v) = @$m;
        my $k;
        if ($interval eq '1d') {
            my @lt = localtime($ts);
            $k = POSIX::mktime(0, 0, 0, $lt[3], $lt[4], $lt[5], 0, 0, -1);
        } elsif ($interval eq '1h') {
            # the local clock's minutes since the bucket's start, taken back
            # from the instant itself (so DST nights need no local mktime)
            my @lt = localtime($ts);
            my $m = $lt[2] * 60 + $lt[1];
            my $start = $open + POSIX::floor(($m - $open) / 60) * 60;
            $k = $ts - ($m - $start) * 60 - $lt[0];
        } else {
            $k = $ts - $ts % $w{$interval};
        }
        my $x = $b{$k} //= do { push @order, $k; { time => $k, open => $o, high => $h, low => $l, volume => 0, minutes => 0 } };
        $x->{high} = $h if $h > $x->{high};
        $x->{low} = $l if $l < $x->{low};
        $x->{close} = $c;
        $x->{volume} += $v;
        $x->{minutes}++;
    }
    POSIX::tzset();
    return [ map { $b{$_} } sort { $a <=> $b } @order ];
}

# epoch seconds of the API's RFC 3339 UTC time text, -1 when not one
sub epoch {
    my ($t) = @_;
    my ($y, $mo, $d, $h, $mi, $sec) = $t =~ /^(\d+)-(\d+)-(\d+)T(\d+):(\d+):(\d+)(?:\.\d+)?Z$/ or return -1;
    require Time::Local;
    return Time::Local::timegm($sec, $mi, $h, $d, $mo - 1, $y);
}

# ok() when the API's bars equal the wanted ones (aggregate()), within 1e-6
sub same_bars {
    my ($got, $want, $what) = @_;
    my @diff;
    push @diff, 'count ' . scalar(@$got) . ' != ' . scalar(@$want) if @$got != @$want;
    for my $i (0 .. $#$want) {
        my ($g, $w) = ($got->[$i] // {}, $want->[$i]);
        my $gt = epoch($g->{time} // '');
        push @diff, "bar $i time $g->{time} != $w->{time}" if $gt != $w->{time};
        for my $f (qw(open high low close)) {
            push @diff, "bar $i $f $g->{$f} != $w->{$f}" if abs(($g->{$f} // -1) - $w->{$f}) > 1e-6;
        }
        for my $f (qw(volume minutes)) {
            push @diff, "bar $i $f " . ($g->{$f} // 'null') . " != $w->{$f}" if ($g->{$f} // -1) != $w->{$f};
        }
        last if @diff > 5;
    }
    Test::More::ok(!@diff, $what) or Test::More::diag(join "\n", @diff);
}

sub DESTROY {
    my ($self) = @_;
    $self->stop_worker if $self->{pid} && $$ == ($self->{owner} //= $$);
}

1;
