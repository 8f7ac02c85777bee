# insite-notify's API: rules CRUD with strict validation (400 with every
# reason), one user cannot see or change another's rules (404), no identity
# -> 401, settings validation, templates need notify:admin, preview renders
# a template for a language.
use strict;
use warnings;
use lib 't/lib';

use Test::More;
use Insite::Notify;

my $why = Insite::Notify::needs();
plan skip_all => $why if $why;

my $n = Insite::Notify->new(tag => 't600');
my ($alice, $bob) = ("alice-$$", "bob-$$");
# symbols unique to this run: the worker's new consumer group reads
# stock_updates from the start, and a price another test file published
# for AAPL would fire alice's rule while this file counts her alerts
my $S = "Z$$";
my ($st, $j);

# ---- no identity
($st, $j) = $n->api(GET => '/api/v1/alerts/rules', undef);
is($st, 401, 'no X-User-Id: 401');
is($j->{error}, 'unauthorized', '... with the JSON error');

# ---- create
($st, $j) = $n->api(POST => '/api/v1/alerts/rules', $alice,
                    { type => 'price_above', symbol => "${S}A", price => 200, cooldown_seconds => 300 });
is($st, 201, 'POST a price_above rule: 201') or diag explain $j;
my $rid = $j->{id};
ok($rid, "rule id $rid");
is($j->{state}{side}, 'unknown', 'a new rule has not seen a price yet');
($st, $j) = $n->api(POST => '/api/v1/alerts/rules', $alice,
                    { type => 'percent_change', symbol => "${S}T", percent => 2.5,
                      window_seconds => 600, direction => 'down', recurring => JSON::PP::false,
                      priority => 'CRITICAL' });
is($st, 201, 'POST a percent_change rule: 201');
is($j->{direction}, 'down', '... direction kept');
is($j->{recurring}, JSON::PP::false, '... one-shot');
is($n->sql("SELECT count(*) FROM alert_rules WHERE user_id = '$alice'"), 2, 'both rows in alert_rules');

# ---- bad bodies
my @bad = (
    [ '[]', qr/JSON object/ ],
    [ '{"symbol":"AAPL","price":1}', qr/type: required/ ],
    [ '{"type":"price_above","symbol":"AAPL"}', qr/price: required/ ],
    [ '{"type":"price_above","symbol":"AAPL","price":-3}', qr/price: must be a number > 0/ ],
    [ '{"type":"price_above","symbol":"aa pl","price":3}', qr/symbol: must be/ ],
    [ '{"type":"price_above","symbol":"AAPL","price":3,"window_seconds":60}', qr/window_seconds: not used/ ],
    [ '{"type":"percent_change","symbol":"AAPL","percent":3}', qr/window_seconds: required/ ],
    [ '{"type":"percent_change","symbol":"AAPL","percent":3,"window_seconds":5}', qr/window_seconds: must be an integer 60/ ],
    [ '{"type":"volume_spike","symbol":"AAPL","factor":0.5,"window_seconds":600}', qr/factor: must be a number > 1/ ],
    [ '{"type":"sentiment_above","symbol":"AAPL","level":1.5}', qr/level: must be a number >= -1/ ],
    [ '{"type":"sentiment_shift","symbol":"AAPL","delta":0.2,"window_seconds":600,"direction":"sideways"}', qr/direction: must be up, down or any/ ],
    [ '{"type":"price_below","symbol":"AAPL","price":3,"cooldown_seconds":-1}', qr/cooldown_seconds: must be an integer/ ],
    [ '{"type":"price_below","symbol":"AAPL","price":3,"priority":"URGENT"}', qr/priority: must be/ ],
    [ '{"type":"price_below","symbol":"AAPL","price":3,"user_id":"bob"}', qr/user_id: unknown field/ ],
    [ '{"type":"price_below","symbol":"AAPL","price":"3"}', qr/price: must be a number/ ],
);
for my $b (@bad) {
    ($st, $j) = $n->api(POST => '/api/v1/alerts/rules', $alice, $b->[0]);
    is($st, 400, "400 for $b->[0]");
    like(join(' | ', @{ $j->{reasons} // [] }), $b->[1], '... with the reason') or diag explain $j;
}
($st, $j) = $n->api(POST => '/api/v1/alerts/rules', $alice,
                    '{"type":"price_below","symbol":"a b","price":-1,"colour":"red","recurring":"yes"}');
is($st, 400, 'several problems: 400');
is(scalar @{ $j->{reasons} }, 4, '... every reason listed') or diag explain $j;
($st, $j) = $n->api(POST => '/api/v1/alerts/rules', $alice, '{"type":');
is($st, 400, 'broken JSON: 400');
is($n->sql("SELECT count(*) FROM alert_rules WHERE user_id = '$alice'"), 2, 'no bad rule was stored');

# ---- authorization: bob cannot see nor change alice's rules
($st, $j) = $n->api(GET => '/api/v1/alerts/rules', $bob);
is($st, 200, 'bob lists his rules');
is_deeply($j->{rules}, [], "... and sees none of alice's");
($st, $j) = $n->api(GET => "/api/v1/alerts/rules/$rid", $bob);
is($st, 404, "bob GETs alice's rule: 404");
($st, $j) = $n->api(PATCH => "/api/v1/alerts/rules/$rid", $bob, { price => 1 });
is($st, 404, "bob PATCHes alice's rule: 404");
($st, $j) = $n->api(DELETE => "/api/v1/alerts/rules/$rid", $bob);
is($st, 404, "bob DELETEs alice's rule: 404");
is($n->sql("SELECT params->>'price' FROM alert_rules WHERE id = $rid"), '200.0', "alice's rule unchanged");
($st, $j) = $n->api(GET => "/api/v1/alerts/rules", $bob, undef, 'X-User-Scopes' => 'notify:admin');
is_deeply($j->{rules}, [], 'the admin scope does not open other users\' rules either');

# ---- alice reads, patches, deletes
($st, $j) = $n->api(GET => '/api/v1/alerts/rules', $alice);
is(scalar @{ $j->{rules} }, 2, 'alice lists 2 rules');
($st, $j) = $n->api(PATCH => "/api/v1/alerts/rules/$rid", $alice, { price => 210.5, cooldown_seconds => 60 });
is($st, 200, 'PATCH: 200') or diag explain $j;
is($j->{price}, 210.5, '... price changed');
is($j->{type}, 'price_above', '... type kept');
($st, $j) = $n->api(PATCH => "/api/v1/alerts/rules/$rid", $alice, { window_seconds => 60 });
is($st, 400, 'PATCH with a field the type does not use: 400');
($st, $j) = $n->api(PATCH => "/api/v1/alerts/rules/$rid", $alice,
                    { type => 'volume_spike', factor => 3, window_seconds => 900 });
is($st, 200, 'PATCH to another type with its fields: 200');
is($j->{factor}, 3, '... factor');
($st, $j) = $n->api(DELETE => "/api/v1/alerts/rules/$rid", $alice);
is($st, 200, 'DELETE: 200');
($st, $j) = $n->api(GET => "/api/v1/alerts/rules/$rid", $alice);
is($st, 404, 'then GET: 404');

# ---- alerts: mark read only your own
$n->sql("INSERT INTO notifications (user_id, template_id, priority, args, fired_ms, state, title, body) "
        . "VALUES ('$alice', 'digest', 'LOW', '{}', 1, 'planned', 't', 'b')");
my $aid = $n->sql("SELECT max(id) FROM notifications WHERE user_id = '$alice'");
($st, $j) = $n->api(GET => '/api/v1/alerts', $alice);
is($j->{unread}, 1, 'alice has 1 unread alert');
($st, $j) = $n->api(POST => "/api/v1/alerts/$aid/read", $bob);
is($st, 404, "bob cannot mark alice's alert read");
($st, $j) = $n->api(GET => '/api/v1/alerts', $bob);
is_deeply($j->{alerts}, [], "bob sees none of alice's alerts");
($st, $j) = $n->api(POST => "/api/v1/alerts/$aid/read", $alice);
is($st, 200, 'alice marks it read');
($st, $j) = $n->api(GET => '/api/v1/alerts?unread=1', $alice);
is($j->{unread}, 0, '... unread 0');

# ---- settings
($st, $j) = $n->api(GET => '/api/v1/alerts/settings', $alice);
is($st, 200, 'GET settings (defaults)');
is_deeply($j->{languages}, ['en'], '... English by default');
($st, $j) = $n->api(PUT => '/api/v1/alerts/settings', $alice,
                    { languages => ['fr', 'de'], time_zone => 'Europe/Paris',
                      quiet_hours => { start => '22:00', end => '07:30' },
                      channels => ['websocket', 'webhook'], webhook_url => 'https://example.invalid/h',
                      webhook_secret => 'a-secret-of-enough-length' });
is($st, 200, 'PUT settings: 200') or diag explain $j;
is($j->{quiet_hours}{end}, '07:30', '... quiet hours stored');
ok($j->{webhook_secret_set} && !exists $j->{webhook_secret}, '... the secret is write-only');
($st, $j) = $n->api(PUT => '/api/v1/alerts/settings', $alice,
                    { languages => ['xx'], time_zone => 'Mars/Base', channels => ['pigeon', 'email'],
                      quiet_hours => { start => '25:00', end => '07:00' }, rate_per_hour => 0 });
is($st, 400, 'bad settings: 400');
is(scalar @{ $j->{reasons} }, 6, '... every reason (incl. email channel without address)') or diag explain $j;
($st, $j) = $n->api(GET => '/api/v1/alerts/settings', $bob);
is_deeply($j->{languages}, ['en'], "bob does not get alice's settings");

# ---- templates: operators only
($st, $j) = $n->api(GET => '/api/v1/alerts/templates', $alice);
is($st, 403, 'templates without notify:admin: 403');
is($j->{error}, 'insufficient_scope', '... insufficient_scope');
my %adm = ('X-User-Scopes' => 'openid notify:admin');
($st, $j) = $n->api(GET => '/api/v1/alerts/templates', 'ops', undef, %adm);
is($st, 200, 'with the scope: 200');
is(scalar @{ $j->{templates} }, 8, '... the 8 shipped templates');
($st, $j) = $n->api(POST => '/api/v1/alerts/templates/percent_move/preview', 'ops',
                    { lang => 'fr', args => { symbol => 'TSLA', change_percent => 1.9, window_minutes => 30,
                                              price => { amount => 251.4, currency => 'USD' }, count => 1,
                                              fired_at => { epoch_ms => 1764680400000 } } }, %adm);
is($st, 200, 'preview: 200') or diag explain $j;
is($j->{title}, "TSLA +1,9\x{a0}% en 30 minutes", 'French percent: +1,9 %') or diag explain $j;
($st, $j) = $n->api(POST => '/api/v1/alerts/templates/digest/preview', 'ops', { lang => 'ar' }, %adm);
is($j->{dir}, 'rtl', 'Arabic preview is right to left');
($st, $j) = $n->api(PUT => '/api/v1/alerts/templates/custom_x', 'ops',
                    { priority => 'LOW', translations => { en => { title => 'Hi {name', body => 'b' } } }, %adm);
is($st, 400, 'a template with a syntax error: 400');
like($j->{message}, qr/template custom_x, language en, title: line \d+, offset \d+/, '... naming template, language, position');
($st, $j) = $n->api(PUT => '/api/v1/alerts/templates/custom_x', 'ops',
                    { priority => 'LOW', translations => { en => { title => 'Hi {name}', body => 'b' } } }, %adm);
is($st, 200, 'a good template: 200');
($st, $j) = $n->api(POST => '/api/v1/alerts/templates/custom_x/preview', 'ops', { lang => 'ja', args => { name => 'X' } }, %adm);
is($j->{title}, 'Hi X', 'a missing language falls back to English');
is($j->{lang}, 'en', '... and says so');
($st, $j) = $n->api(DELETE => '/api/v1/alerts/templates/price_alert', 'ops', undef, %adm);
is($st, 409, 'a shipped template cannot be deleted');
($st, $j) = $n->api(DELETE => '/api/v1/alerts/templates/custom_x', $alice);
is($st, 403, 'a user cannot delete templates');

done_testing();
