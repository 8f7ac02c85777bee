# insite-stocks: the quote (Redis history first, PostgreSQL when Redis has
# none), symbol search, the sentiment series, watchlists per user
# (isolation, limits, validation) and bad input -> 400/404 in the worker
# error shape.  Talks to the worker directly; t/502 goes through nginx.
use strict;
use warnings;
use lib 't/lib';

use JSON::PP ();
use Test::More;

use Insite::Services qw(http_request);
use Insite::Stocks;

for my $v (qw(INSITE_REDIS_PORT INSITE_PG_DSN INSITE_KAFKA_BOOTSTRAP)) {
    plan skip_all => "$v not set (run under scripts/test.sh)" unless $ENV{$v};
}
my $shared = '../shared/fixtures/yahoo';
plan skip_all => "$shared missing" unless -d $shared;
plan skip_all => 'build/bin/insite-stocks not built' unless -x 'build/bin/insite-stocks';

my $json = JSON::PP->new->canonical;
my $s = Insite::Stocks->new(tag => "st501_$$");
my $aapl = do { local (@ARGV, $/) = ("$shared/chart_AAPL_1m_2024-10-02.json"); <> };
$s->feed({ AAPL => $aapl }, { AAPL => 389 });
$s->start_worker(INSITE_STOCKS_WATCHLISTS_MAX => 3, INSITE_STOCKS_WATCHLIST_SYMBOLS_MAX => 4);
my $tag = "st501_$$";

sub req {
    my ($method, $path, %o) = @_;
    my $r = http_request($s->port, $method, $path, headers => $o{headers} // {},
                         (defined $o{body} ? (body => $o{body}) : ()), timeout => 20);
    $r->{json} = eval { $json->decode($r->{body}) };
    return $r;
}
sub is_error {
    my ($r, $status, $code, $msg, $what) = @_;
    is($r->{status}, $status, "$what: $status");
    is_deeply([sort keys %{ $r->{json} // {} }], [qw(error message)], "$what: the error shape");
    is($r->{json}{error}, $code, "$what: error $code");
    like($r->{json}{message} // '', $msg, "$what: says why") if $msg;
}

# ---- quote: Redis first
my $q = req(GET => '/api/v1/stocks/aapl');
is($q->{status}, 200, 'quote 200 (symbol case-insensitive)');
my $d = $q->{json};
is($d->{served_from}, 'redis', 'from the Redis history');
is($d->{symbol}, 'AAPL', 'symbol');
is($d->{source}, 'yahoo', 'source: the feed that produced it');
is($d->{simulated}, JSON::PP::false, 'not simulated');
is($d->{currency}, 'USD', 'currency');
is($d->{exchange}, 'NASDAQ', 'exchange');
is($d->{name}, 'Apple Inc.', 'name');
ok(abs($d->{price} - 225.67) < 1e-6, 'price = regularMarketPrice') or diag $d->{price};
ok(abs($d->{previous_close} - 226.78) < 1e-6, 'previous close from the quote') or diag $d->{previous_close};
ok(abs($d->{change} - (225.67 - 226.78)) < 1e-4, 'change');
ok(abs($d->{change_percent} - (225.67 - 226.78) / 226.78 * 100) < 1e-4, 'change_percent');
is($d->{volume}, 33638504, 'volume: the day volume of the quote');
is($d->{as_of}, '2024-10-03T20:00:01.000Z', 'as_of: the market time');
like($d->{market_state}, qr/^(REGULAR|PRE|POST|CLOSED)$/, 'market_state');
my $mins = $s->minute_bars('AAPL', 1727841600, 1727928000);    # the local day 2024-10-02
my ($hi, $lo) = (0, 1e9);
for (@$mins) { $hi = $_->[2] if $_->[2] > $hi; $lo = $_->[3] if $_->[3] < $lo }
ok(abs($d->{day_high} - $hi) < 1e-6 && abs($d->{day_low} - $lo) < 1e-6, "day range $lo..$hi")
    or diag "$d->{day_low}..$d->{day_high}";
like($q->{headers}{'cache-control'}, qr/^public, max-age=2$/, 'quote: cached for seconds');
like($q->{headers}{etag} // '', qr/^"[0-9a-f]{32}"$/, 'quote: ETag');
is($q->{headers}{'last-modified'}, 'Thu, 03 Oct 2024 20:00:01 GMT', 'quote: Last-Modified = as_of');

# ---- quote: PostgreSQL when Redis has no history
$s->redis('DEL', "$tag:{stock_updates:AAPL}:hist");
$q = req(GET => '/api/v1/stocks/AAPL');
is($q->{status}, 200, 'quote without Redis history: 200');
is($q->{json}{served_from}, 'postgresql', 'from PostgreSQL');
ok(abs($q->{json}{price} - 225.67) < 1e-6, 'the stored quote price');
is($q->{json}{source}, 'yahoo', 'source kept');
# a simulated price says so
$s->psql("UPDATE stock_prices SET source = 'simulated' WHERE symbol = 'AAPL' AND interval = 'quote'");
$q = req(GET => '/api/v1/stocks/AAPL');
is($q->{json}{source}, 'simulated', 'simulated source shown');
is($q->{json}{simulated}, JSON::PP::true, 'simulated: true');

# ---- search
my $r = req(GET => '/api/v1/stocks?query=aap');
is_deeply([ map { $_->{symbol} } @{ $r->{json}{results} } ], ['AAPL'], 'prefix search');
$r = req(GET => '/api/v1/stocks?query=apple');
is_deeply([ map { $_->{symbol} } @{ $r->{json}{results} } ], ['AAPL'], 'name search');
$r = req(GET => '/api/v1/stocks?query=msft');
is_deeply($r->{json}{results}, [], 'only symbols the collector has data for');
$r = req(GET => '/api/v1/stocks?query=%25');
is_deeply($r->{json}{results}, [], '% is a character, not a wildcard');
$r = req(GET => '/api/v1/stocks?query=_');
is_deeply($r->{json}{results}, [], '_ is a character, not a wildcard');
is_error(req(GET => '/api/v1/stocks?query=' . ('a' x 65)), 400, 'bad_request', qr/64/, 'query too long');

# ---- sentiment (what insite-analytics stores)
$s->psql("INSERT INTO sentiment_data (symbol, \"window\", ts, mean_compound, pos_count, neg_count, neu_count, mentions) VALUES"
         . " ('AAPL', '1h', '2024-10-02T14:00Z', 0.25, 3, 1, 2, 6), ('AAPL', '1h', '2024-10-02T15:00Z', -0.5, 0, 2, 0, 2),"
         . " ('AAPL', '24h', '2024-10-02T15:00Z', 0.1, 3, 3, 2, 8), ('AAPL', '1h', '2024-09-01T15:00Z', 0.9, 1, 0, 0, 1)");
$r = req(GET => '/api/v1/stocks/AAPL/sentiment?interval=1h&from=2024-10-02&to=2024-10-03');
is($r->{status}, 200, 'sentiment 200');
is_deeply([ map { [$_->{time}, $_->{mean_compound}, $_->{mentions}] } @{ $r->{json}{points} } ],
          [['2024-10-02T14:00:00.000Z', 0.25, 6], ['2024-10-02T15:00:00.000Z', -0.5, 2]],
          'the 1h series in the range, in order');
is_error(req(GET => '/api/v1/stocks/AAPL/sentiment?interval=5m'), 400, 'bad_request', qr/1h or 24h/, 'unknown window');
is_error(req(GET => '/api/v1/stocks/NOPE/sentiment'), 404, 'not_found', qr/NOPE/, 'sentiment of an unknown symbol');

# ---- bad input
is_error(req(GET => '/api/v1/stocks/AAPL/bars?interval=2m'), 400, 'bad_request',
         qr/^interval must be one of 1m, 5m, 15m, 1h, 1d$/, 'unknown interval');
is_error(req(GET => '/api/v1/stocks/AAPL/bars?interval=1m&from=2024-10-03&to=2024-10-02'), 400,
         'bad_request', qr/^from must be before to$/, 'from > to');
is_error(req(GET => '/api/v1/stocks/AAPL/bars?interval=1m&from=2014-01-01&to=2024-01-01'), 400,
         'bad_request', qr/^range too long for interval 1m: at most 31 days$/, '10 years at 1m');
is_error(req(GET => '/api/v1/stocks/AAPL/bars?from=yesterday'), 400, 'bad_request', qr/^from:/, 'bad time');
is_error(req(GET => '/api/v1/stocks/' . ('A' x 1024)), 400, 'bad_request', qr/symbol must match/, '1 KB symbol');
is_error(req(GET => '/api/v1/stocks/' . ('A' x 1024) . '/bars'), 400, 'bad_request', qr/symbol must match/, '1 KB symbol, bars');
is_error(req(GET => "/api/v1/stocks/A'B"), 400, 'bad_request', qr/symbol must match/, 'quote in a symbol');
is_error(req(GET => '/api/v1/stocks/NOPE'), 404, 'not_found', qr/unknown symbol NOPE/, 'unknown symbol');
is_error(req(GET => '/api/v1/stocks/NOPE/bars?interval=1m'), 404, 'not_found', qr/NOPE/, 'bars of an unknown symbol');
is_error(req(GET => '/api/v1/stocks/AAPL/bars?cursor=b1zz'), 400, 'bad_request', qr/cursor/, 'bad cursor');
is_error(req(GET => '/api/v1/stocks/AAPL/bars?limit=0'), 400, 'bad_request', qr/limit/, 'limit 0');
is_error(req(GET => '/api/v1/stocks/AAPL/nope'), 404, 'not_found', qr/no such path/, 'unknown sub-resource');
my $page = req(GET => '/api/v1/stocks/AAPL/bars?interval=1m&from=1727827200&to=1727913600&limit=2');
my $cur = $page->{json}{next_cursor};
ok($cur, 'a first page has a cursor');
$s->psql("INSERT INTO stock_prices (symbol, ts, close, interval, source) VALUES ('MSFT', now(), 1, 'quote', 'yahoo')");
is_error(req(GET => "/api/v1/stocks/MSFT/bars?cursor=$cur"), 400, 'bad_request', qr/cursor/, "another symbol's cursor");
is_error(req(GET => "/api/v1/stocks/AAPL/bars?interval=5m&cursor=$cur"), 400, 'bad_request', qr/interval/, "another interval's cursor");
is(req(POST => '/api/v1/stocks/AAPL')->{status}, 405, 'POST: 405');

# ---- watchlists: the user is X-User-Id, nothing else
my %A = ('X-User-Id' => 'user-a'), my %B = ('X-User-Id' => 'user-b');
is_error(req(GET => '/api/v1/watchlists'), 401, 'unauthorized', qr/X-User-Id/, 'no user');
is_error(req(PUT => '/api/v1/watchlists', body => '{"watchlists":[]}'), 401, 'unauthorized', undef, 'no user, PUT');
$r = req(GET => '/api/v1/watchlists', headers => \%A);
is_deeply($r->{json}{watchlists}, [], 'a new user has none');
is($r->{headers}{'cache-control'}, 'private, no-store', 'watchlists: never cached');
my $a_lists = '{"watchlists":[{"name":"Tech","symbols":["msft","AAPL","NVDA"]},{"name":"Zeta","symbols":[]},{"name":"Alpha","symbols":["SPY"]}]}';
$r = req(PUT => '/api/v1/watchlists', headers => \%A, body => $a_lists);
is($r->{status}, 200, 'A saves three lists');
is_deeply([ map { [$_->{name}, $_->{symbols}] } @{ $r->{json}{watchlists} } ],
          [['Tech', ['MSFT', 'AAPL', 'NVDA']], ['Zeta', []], ['Alpha', ['SPY']]],
          'order of lists and of symbols kept, symbols upper-cased');
$r = req(PUT => '/api/v1/watchlists', headers => \%B, body => '{"watchlists":[{"name":"Tech","symbols":["GME"]}]}');
is($r->{status}, 200, 'B saves a list of the same name');
$r = req(GET => '/api/v1/watchlists', headers => \%A);
is_deeply([ map { [$_->{name}, $_->{symbols}] } @{ $r->{json}{watchlists} } ],
          [['Tech', ['MSFT', 'AAPL', 'NVDA']], ['Zeta', []], ['Alpha', ['SPY']]], "A still sees only A's lists");
$r = req(GET => '/api/v1/watchlists?user=user-a', headers => \%B);
is_deeply([ map { [$_->{name}, $_->{symbols}] } @{ $r->{json}{watchlists} } ], [['Tech', ['GME']]],
          'B sees only B\'s lists (a user parameter is ignored)');
$r = req(PUT => '/api/v1/watchlists', headers => \%B, body => '{"watchlists":[]}');
is_deeply($r->{json}{watchlists}, [], 'B deletes all of B\'s lists');
is($s->psql("SELECT count(*) FROM watchlists WHERE user_id = 'user-a'"), 3, "A's rows untouched");
is_error(req(PUT => '/api/v1/watchlists', headers => \%A, body => '{"watchlists":[{"name":"a","symbols":[]},{"name":"b","symbols":[]},{"name":"c","symbols":[]},{"name":"d","symbols":[]}]}'),
         400, 'bad_request', qr/at most 3 watchlists/, 'too many lists');
is_error(req(PUT => '/api/v1/watchlists', headers => \%A, body => '{"watchlists":[{"name":"a","symbols":["A","B","C","D","E"]}]}'),
         400, 'bad_request', qr/at most 4 symbols/, 'too many symbols');
is_error(req(PUT => '/api/v1/watchlists', headers => \%A, body => '{"watchlists":[{"name":"a","symbols":["A B"]}]}'),
         400, 'bad_request', qr/symbols\[0\]/, 'a bad symbol');
is_error(req(PUT => '/api/v1/watchlists', headers => \%A, body => '{"watchlists":[{"name":"a","symbols":["A","a"]}]}'),
         400, 'bad_request', qr/twice/, 'a symbol twice');
is_error(req(PUT => '/api/v1/watchlists', headers => \%A, body => '{"watchlists":[{"name":"a","symbols":[]},{"name":"a","symbols":[]}]}'),
         400, 'bad_request', qr/name is used twice/, 'a name twice');
is_error(req(PUT => '/api/v1/watchlists', headers => \%A, body => '{"watchlists":[{"name":"","symbols":[]}]}'),
         400, 'bad_request', qr/name/, 'an empty name');
is_error(req(PUT => '/api/v1/watchlists', headers => \%A, body => '[1]'),
         400, 'bad_request', qr/expected/, 'not an object');
is_error(req(PUT => '/api/v1/watchlists', headers => \%A, body => '{"watchlists":'),
         400, 'bad_request', qr/invalid JSON/, 'broken JSON');
is($s->psql("SELECT string_agg(name, ',' ORDER BY position) FROM watchlists WHERE user_id = 'user-a'"),
   'Tech,Zeta,Alpha', 'refused PUTs changed nothing');

$s->stop_worker;
done_testing();
