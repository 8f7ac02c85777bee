# insite-collector end to end: the yahoo feed against recorded chart
# responses served by nginx (plus errors, 429, malformed bodies), social
# sources (RSS, X) from recordings, what lands in Redis (seq, history), Kafka
# (read back with kcat: topic, key, partition, envelope) and PostgreSQL
# (rows), the job API, and kill -9 mid-run + restart: no duplicate rows, no
# lost bars.
#
# Needs the services of scripts/services.sh (INSITE_REDIS_PORT, INSITE_PG_DSN,
# INSITE_KAFKA_BOOTSTRAP, as scripts/test.sh exports them); works in its own
# PostgreSQL schema, Redis key prefix and Kafka source_service.
# INSITE_COLLECTOR_BIN picks the binary (e.g. build/asan/bin/insite-collector).

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
use Insite::Services qw(free_port wait_port http_request run_cmd);

for my $v (qw(INSITE_REDIS_PORT INSITE_PG_DSN INSITE_KAFKA_BOOTSTRAP)) {
    plan skip_all => "$v not set (run under scripts/test.sh or source build/run/services.env)"
        unless $ENV{$v};
}
my $root = getcwd();
my $bin = $ENV{INSITE_COLLECTOR_BIN} // "$root/build/bin/insite-collector";
$bin = "$root/$bin" unless $bin =~ m{^/};
plan skip_all => "$bin not built" unless -x $bin;
my $shared = "$root/../shared/fixtures";
plan skip_all => "$shared missing" unless -d "$shared/yahoo";
my $own = "$root/tests/fixtures/collector";

my $json = JSON::PP->new->canonical;
my $tag = "ctest$$";
my $tmp = File::Temp::tempdir("insite-collector-XXXXXX", TMPDIR => 1, CLEANUP => 1);
chmod 0755, $tmp;    # nginx workers may run as another user
my $rport = $ENV{INSITE_REDIS_PORT};

sub slurp { local (@ARGV, $/) = @_; my $d = <>; $d // '' }
sub spew {
    my ($f, $d) = @_;
    open my $fh, '>', "$f.tmp" or die "$f: $!";
    print $fh $d;
    close $fh;
    chmod 0644, "$f.tmp";
    rename "$f.tmp", $f or die "rename $f: $!";
}
sub redis { my ($out) = run_cmd(5, 'redis-cli', '-p', $rport, @_); chomp $out; $out }
sub psql {
    my ($out, $rc) = run_cmd(10, 'psql', $ENV{INSITE_PG_DSN}, '-X', '-qtA', '-v', 'ON_ERROR_STOP=1',
                             '-c', "SET search_path TO $tag; $_[0]");
    die "psql: $out" if $rc;
    chomp $out;
    $out;
}
sub wait_for {
    my ($secs, $cond) = @_;
    my $deadline = time + $secs;
    while (time < $deadline) { return 1 if $cond->(); sleep 0.05 }
    return $cond->();
}

# ---- fixtures: AAPL first with the day's first 200 bars, then the full day
my $full = slurp("$shared/yahoo/chart_AAPL_1m_2024-10-02.json");
my $doc = JSON::PP->new->decode($full);
my $part = JSON::PP->new->decode($full);
{
    my $r = $part->{chart}{result}[0];
    my $n = 200;
    $_ = [ @{$_}[0 .. $n - 1] ] for $r->{timestamp}, values %{ $r->{indicators}{quote}[0] };
    $r->{meta}{regularMarketTime} = $r->{timestamp}[-1] + 60;
    $r->{meta}{regularMarketPrice} = $r->{indicators}{quote}[0]{close}[-1];
}
spew("$tmp/aapl.json", JSON::PP->new->encode($part));
my $six = slurp("$shared/yahoo/chart_SIX_404_not_found.json");
$six =~ s/\s+\z//;
$six =~ s/'/\\'/g;

my $nginx = Insite::Nginx->new(server => <<"CONF");
        default_type application/json;
        location = /v8/finance/chart/AAPL { alias $tmp/aapl.json; }
        location = /v8/finance/chart/SIX { return 404 '$six'; }
        location = /v8/finance/chart/NULLPX { alias $own/chart_null_price.json; }
        location = /v8/finance/chart/TRUNC { alias $own/chart_truncated.json; }
        location = /v8/finance/chart/ERR { return 503; }
        location = /v8/finance/chart/RATE { add_header Retry-After 1 always; return 429 '{}'; }
        location = /rss/AAPL { default_type application/rss+xml; alias $shared/rss/sec_press_releases_2025-01.rss; }
        location = /2/tweets/search/recent {
            if (\$http_authorization != "Bearer test-bearer") { return 401; }
            alias $shared/twitter/search_recent_tweepy_2022-10-07.json;
        }
CONF
my $base = "http://127.0.0.1:" . $nginx->port;

# ---- collector
psql("DROP SCHEMA IF EXISTS $tag CASCADE; CREATE SCHEMA $tag;");
(my $dsn = $ENV{INSITE_PG_DSN}) .= ($ENV{INSITE_PG_DSN} =~ /\?/ ? '&' : '?') . "options=-csearch_path%3D$tag";
my $api = free_port();
my %env = (
    INSITE_PROVIDER_FEED => 'yahoo', INSITE_PROVIDER_YAHOO_URL => $base,
    INSITE_PROVIDER_RETRIES => 1, INSITE_PROVIDER_BACKOFF => '50ms',
    INSITE_COLLECTOR_SYMBOLS => 'AAPL,SIX,NULLPX,TRUNC,ERR,RATE',
    INSITE_COLLECTOR_INTERVAL => '300ms', INSITE_COLLECTOR_HTTP_PORT => $api,
    INSITE_COLLECTOR_SOURCE_SERVICE => "collector-$tag",
    INSITE_REDIS_PORT => $rport, INSITE_REDIS_PREFIX => "$tag:",
    INSITE_PG_DSN => $dsn, INSITE_PG_MIGRATIONS_DIR => "$root/workers/migrations",
    INSITE_KAFKA_BOOTSTRAP => $ENV{INSITE_KAFKA_BOOTSTRAP}, INSITE_KAFKA_LINGER => '5ms',
    INSITE_KAFKA_SPOOL_DIR => "$tmp/spool",
    INSITE_SOCIAL_INTERVAL => '1s', INSITE_SOCIAL_RSS_FEEDS => "$base/rss/{symbol}",
    INSITE_SOCIAL_X_ENABLED => 'true', INSITE_SOCIAL_X_URL => $base,
    INSITE_SOCIAL_X_BEARER => 'test-bearer', INSITE_SOCIAL_REDDIT_ENABLED => 'true',
);
my $log = "$tmp/collector.log";
my $pid;
sub start {
    $pid = Insite::Services::spawn($bin, \%env, $log);
    ok(wait_port($api, 10), "collector API listens on $api (pid $pid)");
}
END { kill 'KILL', $pid if $pid }

start();
sub bars_in_pg { psql("SELECT count(*) FROM stock_prices WHERE symbol = 'AAPL' AND interval = '1m'") }
# bar 105 of the recording is all null: 199 of the first 200 are stored
ok(wait_for(15, sub { bars_in_pg() == 199 }), 'PostgreSQL: the 199 valid bars of the first 200')
    or diag(bars_in_pg() . "\n" . slurp($log));
sleep 1;    # more rounds: nothing changed, nothing is republished

# ---- Redis
is(redis('HGET', "${tag}:{stock_bars:AAPL}:seq", 'seq'), 199, 'Redis stock_bars:AAPL seq = bars stored');
is(redis('ZCARD', "${tag}:{stock_bars:AAPL}:hist"), 199, 'history holds each bar once');
is(redis('HGET', "${tag}:{stock_updates:AAPL}:seq", 'seq'), 1, 'one stock_update: later rounds saw no change');
my ($upd) = split /\n/, redis('ZRANGE', "${tag}:{stock_updates:AAPL}:hist", 0, 0);
my $m = eval { $json->decode($upd) } // {};
is($m->{type}, 'stock_update', 'history message type');
is_deeply([sort keys %{ $m->{data} // {} }],
          [sort qw(symbol price change change_percent volume currency market_time source)],
          'stock_update fields');
is($m->{data}{source}, 'yahoo', 'source yahoo');
is($m->{data}{currency}, 'USD', 'currency');
is($m->{data}{volume}, 33638504, 'volume');
ok(abs($m->{data}{price} - $part->{chart}{result}[0]{meta}{regularMarketPrice}) < 0.0001, 'price');
my $prev = 226.78;
ok(abs($m->{data}{change} - ($m->{data}{price} - $prev)) < 0.0002, 'change against previousClose');
is($m->{data}{market_time}, '2024-10-02T16:50:00.000Z', 'market_time from meta.regularMarketTime');
my ($bar) = split /\n/, redis('ZRANGE', "${tag}:{stock_bars:AAPL}:hist", 0, 0);
my $q0 = $doc->{chart}{result}[0]{indicators}{quote}[0];
is_deeply(eval { $json->decode($bar)->{data} },
          { symbol => 'AAPL', interval => '1m', time => '2024-10-02T13:30:00.000Z', open => 225.89,
            high => 0 + sprintf('%.4f', $q0->{high}[0]), low => 0 + sprintf('%.4f', $q0->{low}[0]),
            close => 225.7, volume => 1205461, source => 'yahoo' },
          'first bar, prices rounded from float32-widened doubles');
for my $s (qw(SIX NULLPX TRUNC ERR RATE)) {
    is(redis('EXISTS', "${tag}:{stock_updates:$s}:seq"), 0, "nothing published for $s");
}
is(psql("SELECT count(*) FROM stock_prices WHERE symbol <> 'AAPL'"), 0, 'no rows for rejected symbols');
is(psql("SELECT count(*) FROM stock_prices WHERE symbol = 'AAPL' AND interval = 'quote'"), 1, 'one quote row');

# ---- the log: one line per failure, with symbol and cause
my $l = slurp($log);
like($l, qr/yahoo SIX: rejected: HTTP 404, chart.error: Not Found: No data found, symbol may be delisted/, 'SIX: 404 + chart.error');
like($l, qr/yahoo NULLPX: rejected: meta.regularMarketPrice is null/, 'NULLPX: null price');
like($l, qr/yahoo TRUNC: rejected: malformed JSON/, 'TRUNC: malformed body');
like($l, qr/yahoo ERR: HTTP 503 \(attempt 1 of 2\), retrying in \d+ms/, 'ERR: retried');
like($l, qr/yahoo ERR: rejected: HTTP 503 after 2 attempts/, 'ERR: given up');
like($l, qr/yahoo RATE: rejected: HTTP 429 Too Many Requests \(Retry-After: 1s\) after 2 attempts/, 'RATE: Retry-After honoured');
like($l, qr/yahoo AAPL: 1 bar\(s\) with null or invalid values not published/, 'null bar logged');
like($l, qr/reddit enabled but social.reddit_token .* is empty: skipped/, 'reddit skipped without credentials');

# ---- social posts: stored once, produced once
ok(wait_for(5, sub { psql("SELECT count(*) FROM social_posts WHERE source = 'x'") == 10 }), '10 tweets stored');
is(psql("SELECT count(*) FROM social_posts WHERE source = 'rss'"), 25, '25 RSS items stored');
is(psql("SELECT count(*) FROM social_posts WHERE source = 'rss' AND symbols = '{AAPL}' AND created_at = '2025-01-24 16:00:00+00'"),
   1, 'RSS item with symbol and time');

# ---- job API
sub api {
    my ($method, $path, $body) = @_;
    my $r = http_request($api, $method, $path,
                         defined $body ? (body => $body, headers => { 'Content-Type' => 'application/json' }) : ());
    return ($r->{status} // 0, eval { $json->decode($r->{body}) } // { raw => $r->{body} });
}
sub job_status { (api('GET', "/api/v1/collect/status/$_[0]"))[1]{status} // '' }
my ($st, $b) = api('POST', '/api/v1/collect/stocks', '{"symbols":["AAPL"],"priority":"HIGH"}');
is($st, 202, 'POST stocks: 202');
is($b->{status}, 'started', 'status started');
is_deeply($b->{symbols}, ['AAPL'], 'symbols echoed');
like($b->{job_id} // '', qr/^[0-9a-f-]{36}$/, 'job_id is a uuid');
my $job = $b->{job_id};
ok(wait_for(10, sub { job_status($job) eq 'completed' }), 'job completed');
($st, $b) = api('GET', "/api/v1/collect/status/$job");
is($b->{progress}, 100, 'progress 100');
($st, $b) = api('POST', '/api/v1/collect/stocks', '{"symbols":["SIX"]}');
my $bad_job = $b->{job_id};
ok(wait_for(10, sub { job_status($bad_job) eq 'failed' }), 'job for SIX failed');
like((api('GET', "/api/v1/collect/status/$bad_job"))[1]{error} // '', qr/SIX: HTTP 404, chart.error: Not Found/, 'with the reason');
($st, $b) = api('POST', '/api/v1/collect/sentiment', '{"symbols":["AAPL"],"sources":["rss","twitter"]}');
is($st, 202, 'POST sentiment: 202');
my $sjob = $b->{job_id};
ok(wait_for(10, sub { job_status($sjob) eq 'completed' }), 'sentiment job completed');
for my $case ([ '{"symbols":["NOPE"]}', 'unknown symbol "NOPE"' ], [ '{"symbols":[]}', 'non-empty' ],
              [ '{"symbols":["AAPL"],"priority":"URGENT"}', 'priority' ], [ '{"symbols":', 'invalid JSON' ],
              [ '[1]', 'JSON object' ]) {
    ($st, $b) = api('POST', '/api/v1/collect/stocks', $case->[0]);
    is($st, 400, "400 for $case->[0]");
    like($b->{message} // '', qr/\Q$case->[1]\E/, "reason: $case->[1]");
}
($st, $b) = api('POST', '/api/v1/collect/sentiment', '{"symbols":["AAPL"],"sources":["myspace"]}');
is($st, 400, '400 for an unknown source');
is((api('GET', '/api/v1/collect/status/00000000-0000-4000-8000-000000000000'))[0], 404, 'unknown job: 404');
is((api('GET', '/api/v1/collect/status/nope'))[0], 400, 'bad job id: 400');

# ---- kill -9 mid-run, restart: no duplicate rows, no lost bars
my $seq_before = redis('HGET', "${tag}:{stock_bars:AAPL}:seq", 'seq');
spew("$tmp/aapl.json", $full);            # the rest of the day arrives
ok(wait_for(10, sub { redis('HGET', "${tag}:{stock_bars:AAPL}:seq", 'seq') > $seq_before }), 'new bars being published');
kill 'KILL', $pid;
waitpid $pid, 0;
note('killed at bar seq ' . redis('HGET', "${tag}:{stock_bars:AAPL}:seq", 'seq') . ', rows ' . bars_in_pg());
# a job the killed collector left running runs again after the restart
psql("INSERT INTO collection_jobs (job_id, kind, symbols, status) "
     . "VALUES ('11111111-1111-4111-8111-111111111111', 'stocks', '{AAPL}', 'running')");
start();
ok(wait_for(15, sub { bars_in_pg() == 389 }), 'all 389 complete bars of the day stored after the restart')
    or diag(bars_in_pg());
sleep 0.5;
is(psql("SELECT count(*) - count(DISTINCT ts) FROM stock_prices WHERE symbol = 'AAPL' AND interval = '1m'"),
   0, 'no duplicate rows');
is(psql("SELECT extract(epoch FROM min(ts))::bigint || ' ' || extract(epoch FROM max(ts))::bigint "
        . "FROM stock_prices WHERE symbol = 'AAPL' AND interval = '1m'"),
   '1727875800 1727899140', 'first and last bar of the session');
is(redis('HGET', "${tag}:{stock_bars:AAPL}:seq", 'seq'), 389, 'Redis: 389 bar events, none twice');
is(redis('ZCARD', "${tag}:{stock_bars:AAPL}:hist"), 389, 'Redis history: 389 bars');
my %times = map { ($json->decode($_)->{data}{time} => 1) } split /\n/, redis('ZRANGE', "${tag}:{stock_bars:AAPL}:hist", 0, -1);
is(scalar(keys %times), 389, 'each bar time once in the history');
is(redis('HGET', "${tag}:{stock_updates:AAPL}:seq", 'seq'), 2, 'stock_updates: one more (the quote changed), none repeated');
ok(wait_for(10, sub { psql("SELECT status FROM collection_jobs WHERE job_id = '11111111-1111-4111-8111-111111111111'") eq 'done' }),
   'job left running by the killed collector ran after the restart');
is(job_status($job), 'completed', 'earlier job still answered after the restart');

# ---- Kafka: read back from the cluster
sub kafka {
    my ($topic) = @_;
    my ($out) = run_cmd(20, 'kcat', '-C', '-b', $ENV{INSITE_KAFKA_BOOTSTRAP}, '-t', $topic,
                        '-o', 'beginning', '-e', '-q', '-f', "%k\t%p\t%s\n");
    return grep { ($_->{env}{source_service} // '') eq "collector-$tag" }
           map { my ($k, $p, $s) = split /\t/, $_, 3;
                 { key => $k, part => $p, env => eval { $json->decode($s) } // {} } }
           grep { /\t/ } split /\n/, $out;
}
my @su = kafka('stock_updates');
# 1 before the kill; the changed quote after it (a kill inside the producer's
# linger window can lose that one: Redis then already has it)
ok(@su >= 1 && @su <= 2, 'stock_updates: each changed quote at most once (' . scalar(@su) . ')');
is(scalar(grep { $_->{key} ne 'AAPL' } @su), 0, 'key = symbol');
my %parts = map { ($_->{part} => 1) } @su;
is(scalar(keys %parts), 1, 'one partition for one key');
my $e = $su[0]{env};
is($e->{event_type}, 'stock_update', 'event_type');
is($e->{version}, '1.0', 'version');
like($e->{event_id} // '', qr/^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/, 'event_id uuid v4');
like($e->{timestamp} // '', qr/^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$/, 'timestamp RFC 3339 ms');
is($e->{data}{symbol}, 'AAPL', 'data.symbol');
is($e->{data}{market_time}, '2024-10-02T16:50:00.000Z', 'data = the stock_update');
my @sp = kafka('social_posts');
is(scalar(@sp), 35, 'social_posts: 25 RSS items + 10 tweets, each once');
my %spp = map { ($_->{part} => 1) } grep { $_->{key} eq 'AAPL' } @sp;
is(scalar(keys %spp), 1, 'social posts keyed AAPL share a partition');
is($sp[0]{env}{event_type}, 'social_post', 'social_post envelope');

# ---- clean shutdown
kill 'TERM', $pid;
my $t0 = time;
waitpid $pid, 0;
is($? >> 8, 0, 'SIGTERM: exit 0');
ok(time - $t0 < 10, 'drained quickly');
$pid = undef;
unlike(slurp($log), qr/AddressSanitizer|runtime error:|LeakSanitizer/, 'no sanitizer reports');
$nginx->check_log;
psql("DROP SCHEMA $tag CASCADE");
done_testing;
