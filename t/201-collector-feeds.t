# insite-collector offline feeds and the keyed provider: replay (recorded
# chart responses through the yahoo parser), simulated (labelled), auto
# (yahoo down -> replay with a warning), finnhub (docs-shaped responses
# from nginx), and --check-config on the example file.

use strict;
use warnings;
use lib 't/lib';

use Cwd qw(getcwd);
use File::Temp ();
use JSON::PP ();
use POSIX ();
use Test::More;
use Time::HiRes qw(time sleep);

use Insite::Nginx;
use Insite::Services qw(free_port wait_port run_cmd);

my $root = getcwd();
my $bin = $ENV{INSITE_COLLECTOR_BIN} // "$root/build/bin/insite-collector";
$bin = "$root/$bin" unless $bin =~ m{^/};
plan skip_all => "$bin not built" unless -x $bin;

my ($out, $rc) = run_cmd(10, $bin, '-c', "$root/workers/collector/collector.conf.example", '--check-config');
is($rc, 0, 'collector.conf.example passes --check-config') or diag($out);

for my $v (qw(INSITE_REDIS_PORT INSITE_PG_DSN INSITE_KAFKA_BOOTSTRAP)) {
    unless ($ENV{$v}) { done_testing; exit 0 }
}
my $shared = "$root/../shared/fixtures";
my $own = "$root/tests/fixtures/collector";
my $json = JSON::PP->new;
my $tag = "cfeed$$";
my $tmp = File::Temp::tempdir("insite-collector-XXXXXX", TMPDIR => 1, CLEANUP => 1);
my $rport = $ENV{INSITE_REDIS_PORT};

# '' until the file exists (the waits below read logs the collector has yet to open)
sub slurp { open(my $f, '<', $_[0]) or return ''; local $/; my $d = <$f>; $d // '' }
sub redis { my ($o) = run_cmd(5, 'redis-cli', '-p', $rport, @_); chomp $o; $o }
sub psql {
    my ($o, $r) = run_cmd(10, 'psql', $ENV{INSITE_PG_DSN}, '-X', '-qtA', '-c', $_[0]);
    die "psql: $o" if $r;
    chomp $o;
    $o;
}
sub wait_for {
    my ($secs, $cond) = @_;
    my $deadline = time + $secs;
    while (time < $deadline) { return 1 if $cond->(); sleep 0.05 }
    return $cond->();
}

my ($aapl, $unknown) = map { (my $b = slurp("$own/$_")) =~ s/\s+\z//; $b }
                        qw(finnhub_quote_AAPL.json finnhub_quote_unknown.json);
my $nginx = Insite::Nginx->new(server => <<"CONF");
        default_type application/json;
        location /v8/ { return 503; }
        location = /api/v1/quote {
            if (\$arg_token != "k1") { return 401 '{"error":"Invalid API key."}'; }
            if (\$arg_symbol = "ZZZZ") { return 200 '$unknown'; }
            return 200 '$aapl';
        }
CONF
my $base = "http://127.0.0.1:" . $nginx->port;
psql("DROP SCHEMA IF EXISTS $tag CASCADE; CREATE SCHEMA $tag;");
(my $dsn = $ENV{INSITE_PG_DSN}) .= ($ENV{INSITE_PG_DSN} =~ /\?/ ? '&' : '?') . "options=-csearch_path%3D$tag";

# runs the collector with %extra until $until->(its log so far) is true
# (60 s at most: a condition, not a duration, so a slow machine or a
# coverage build only takes longer); returns its log
sub run_feed {
    my ($name, $until, %extra) = @_;
    my $log = "$tmp/$name.log";
    my %env = (
        INSITE_COLLECTOR_INTERVAL => '200ms', INSITE_COLLECTOR_HTTP_PORT => 0,
        INSITE_COLLECTOR_SOURCE_SERVICE => "collector-$tag",
        INSITE_REDIS_PORT => $rport, INSITE_REDIS_PREFIX => "$tag:$name:",
        INSITE_PG_DSN => $dsn, INSITE_PG_MIGRATIONS_DIR => "$root/workers/migrations",
        INSITE_KAFKA_BOOTSTRAP => $ENV{INSITE_KAFKA_BOOTSTRAP}, INSITE_KAFKA_SPOOL_DIR => "$tmp/spool",
        INSITE_SOCIAL_RSS_ENABLED => 'false', INSITE_PROVIDER_RETRIES => 0,
        INSITE_PROVIDER_REPLAY_FILES => "$shared/yahoo/chart_AAPL_1m_2024-10-02.json",
        %extra,
    );
    unlink $log;
    my $pid = Insite::Services::spawn($bin, \%env, $log);
    wait_for(60, sub { $until->(slurp($log)) });
    kill 'TERM', $pid;
    waitpid $pid, 0;
    is($? >> 8, 0, "$name: clean exit");
    return slurp($log);
}
sub history { map { $json->decode($_) } split /\n/, redis('ZRANGE', "${tag}:$_[0]:{$_[1]}:hist", 0, -1) }

# replay: the recording, stamped now, through the same parser
my $l = run_feed('replay', sub { history('replay', 'stock_updates:AAPL') >= 4 }, INSITE_PROVIDER_FEED => 'replay', INSITE_COLLECTOR_SYMBOLS => 'AAPL');
my @h = history('replay', 'stock_updates:AAPL');
ok(@h >= 4, 'replay: a quote per round (' . scalar(@h) . ')');
is($h[0]{data}{source}, 'replay', 'labelled replay');
is($h[0]{data}{price}, 225.7, 'first recorded close');
is($h[0]{data}{volume}, 1205461, 'recorded volume');
is($h[1]{data}{price}, 225.94, 'second recorded close') if $h[1]{data}{price} != 225.7;
like($l, qr/replay: .*chart_AAPL_1m_2024-10-02.json: AAPL, 389 1m bars/, 'replay loaded the recording');

# simulated: random walk, clearly labelled
$l = run_feed('sim', sub { history('sim', 'stock_updates:MSFT') >= 3 }, INSITE_PROVIDER_FEED => 'simulated', INSITE_COLLECTOR_SYMBOLS => 'AAPL,MSFT',
              INSITE_PROVIDER_SIM_SEED => 42);
@h = history('sim', 'stock_updates:MSFT');
ok(@h >= 3, 'simulated: quotes published');
is(scalar(grep { $_->{data}{source} ne 'simulated' } @h), 0, 'every quote says "source":"simulated"');
like($l, qr/simulated: prices are a random walk/, 'warned at start');

# auto: yahoo answers 503 -> after 2 failed rounds, replay with a warning
$l = run_feed('auto', sub { history('auto', 'stock_updates:AAPL') >= 1 }, INSITE_PROVIDER_FEED => 'auto', INSITE_PROVIDER_YAHOO_URL => $base,
              INSITE_PROVIDER_FAIL_ROUNDS => 2, INSITE_COLLECTOR_SYMBOLS => 'AAPL');
like($l, qr/yahoo AAPL: rejected: HTTP 503 after 1 attempt/, 'auto: yahoo failure logged');
like($l, qr/warn: provider auto: yahoo failed for every symbol in 2 rounds in a row; falling back to the replay feed/, 'auto: fallback warning');
@h = history('auto', 'stock_updates:AAPL');
ok(@h >= 1 && $h[0]{data}{source} eq 'replay', 'auto: quotes from the replay feed');

# finnhub: keyed; unknown symbols (all zeros) rejected, never published
# two rounds rejected ZZZZ: AAPL's second, unchanged quote was not published
$l = run_feed('finnhub', sub { my $n = () = $_[0] =~ /finnhub ZZZZ: rejected/g; $n >= 2 },
              INSITE_PROVIDER_FEED => 'finnhub', INSITE_PROVIDER_FINNHUB_URL => $base,
              INSITE_PROVIDER_FINNHUB_KEY => 'k1', INSITE_COLLECTOR_SYMBOLS => 'AAPL,ZZZZ');
@h = history('finnhub', 'stock_updates:AAPL');
is(scalar(@h), 1, 'finnhub: one quote (unchanged afterwards)');
is_deeply($h[0]{data}, { symbol => 'AAPL', price => 261.74, change => 0.52, change_percent => 0.1991,
                         volume => undef, currency => 'USD', market_time => '2020-02-25T14:30:00.000Z',
                         source => 'finnhub' }, 'finnhub stock_update');
is(redis('EXISTS', "${tag}:finnhub:{stock_updates:ZZZZ}:seq"), 0, 'zeros for ZZZZ not published');
like($l, qr/finnhub ZZZZ: rejected: "c" \(current price\) is missing, null or 0/, 'finnhub: zeros rejected with a reason');
($out, $rc) = run_cmd(10, 'env', 'INSITE_PROVIDER_FEED=finnhub', "INSITE_PG_DSN=$dsn",
                      "INSITE_REDIS_PORT=$rport", "INSITE_KAFKA_BOOTSTRAP=$ENV{INSITE_KAFKA_BOOTSTRAP}",
                      "INSITE_KAFKA_SPOOL_DIR=$tmp/spool", "INSITE_PG_MIGRATIONS_DIR=$root/workers/migrations", $bin);
isnt($rc, 0, 'finnhub without a key: does not start');
like($out, qr/provider.finnhub_key \(INSITE_PROVIDER_FINNHUB_KEY\) is empty/, 'and says why');

psql("DROP SCHEMA $tag CASCADE");
$nginx->check_log;
done_testing;
