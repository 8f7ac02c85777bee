# Directive values of the gateway and core modules are range-checked by
# `nginx -t`: a value out of range is an error naming the directive, the
# value and the range, never a configuration that starts and misbehaves;
# insite_gateway_breaker with no insite_gateway_service in scope is an
# error, not ignored.
use strict;
use warnings;
use lib 't/lib';
use Test::More;
use File::Temp ();
use Test::Nginx::Util ();
use Insite::Services ();

my $bin = $ENV{TEST_NGINX_BINARY} || '/usr/sbin/nginx';
my $dir = File::Temp::tempdir('insite-conf-XXXXXX', TMPDIR => 1, CLEANUP => 1);
mkdir "$dir/logs";

# nginx -t on a configuration; returns (exit status, output)
sub nginx_t {
    my ($http, $server) = @_;
    my $conf = join('', map { "load_module $_;\n" }
                        split ' ', $ENV{TEST_NGINX_LOAD_MODULES} // '')
             . "error_log $dir/logs/error.log;\npid $dir/logs/nginx.pid;\n"
             . "events {}\nhttp {\n    access_log off;\n$http\n"
             . "    server {\n        listen 127.0.0.1:1;\n$server\n    }\n}\n";
    Test::Nginx::Util::spew("$dir/nginx.conf", $conf);
    my ($out, $status) = Insite::Services::run_cmd(30,
        $bin, '-t', '-p', "$dir/", '-c', "$dir/nginx.conf");
    return ($status, $out // '');
}

sub rejected {
    my ($http, $server, $msg, $name) = @_;
    my ($status, $out) = nginx_t($http, $server);
    isnt($status, 0, "$name: nginx -t fails");
    like($out, $msg, "$name: the error names the value and its range")
        or diag $out;
}

sub accepted {
    my ($http, $server, $name) = @_;
    my ($status, $out) = nginx_t($http, $server);
    is($status, 0, "$name: nginx -t passes") or diag $out;
}

my $loc = sub { "        location /a { $_[0] insite_healthz; }" };

# core: insite_redis
rejected('insite_redis 127.0.0.1:6379 command_timeout=0;', '',
    qr/insite_redis: invalid parameter "command_timeout=0": must be 1ms to 1m/,
    'insite_redis command_timeout=0');
rejected('insite_redis 127.0.0.1:6379 command_timeout=2h;', '',
    qr/insite_redis: invalid parameter "command_timeout=2h": must be 1ms to 1m/,
    'insite_redis command_timeout=2h');
rejected('insite_redis 127.0.0.1:6379 connect_timeout=0ms;', '',
    qr/insite_redis: invalid parameter "connect_timeout=0ms": must be 1ms to 1m/,
    'insite_redis connect_timeout=0ms');
rejected('insite_redis 127.0.0.1:6379 connect_timeout=soon;', '',
    qr/insite_redis: invalid parameter "connect_timeout=soon": not a time/,
    'insite_redis connect_timeout=soon');
rejected('insite_redis 127.0.0.1:6379 db=70000;', '',
    qr/insite_redis: invalid parameter "db=70000": must be 0 to 65535/,
    'insite_redis db=70000');
accepted('insite_redis 127.0.0.1:6379 connect_timeout=1m command_timeout=1ms db=0;', '',
         'insite_redis at its bounds');

# gateway: leeway, zone size, rate limit, breaker
rejected('', $loc->('insite_gateway_jwt_leeway 2h;'),
    qr/insite_gateway_jwt_leeway: invalid parameter "2h": must be 0 to 1h/,
    'insite_gateway_jwt_leeway 2h');
accepted('', $loc->('insite_gateway_jwt_leeway 1h;'), 'insite_gateway_jwt_leeway 1h');
rejected('insite_gateway_rate_zone z 16k;', '',
    qr/insite_gateway_rate_zone: invalid parameter "16k": must be 32k to 1024m/,
    'insite_gateway_rate_zone 16k');
rejected('insite_gateway_rate_zone z lots;', '',
    qr/insite_gateway_rate_zone: invalid parameter "lots": not a size/,
    'insite_gateway_rate_zone lots');
rejected('insite_gateway_rate_zone z 32k;',
    $loc->('insite_gateway_rate_limit zone=z key=$remote_addr rate=0r/s;'),
    qr/insite_gateway_rate_limit: invalid parameter "rate=0r\/s": must be 1 to 1000000/,
    'insite_gateway_rate_limit rate=0r/s');
rejected('insite_gateway_rate_zone z 32k;',
    $loc->('insite_gateway_rate_limit zone=z key=$remote_addr rate=1r/s burst=2000000;'),
    qr/insite_gateway_rate_limit: invalid parameter "burst=2000000": must be 0 to 1000000/,
    'insite_gateway_rate_limit burst=2000000');

for my $case (['failures=0', 'must be 1 to 100000'],
              ['min_requests=0', 'must be 1 to 1000000'],
              ['half_open=0', 'must be 1 to 1000'],
              ['window=0', 'must be 1s to 1h'],
              ['window=500ms', 'must be 1s to 1h'],
              ['window=2h', 'must be 1s to 1h'],
              ['recovery=0', 'must be 100ms to 1h'],
              ['recovery=3h', 'must be 100ms to 1h'],
              ['ratio=0', 'must be 0.001 to 1'],
              ['ratio=1.5', 'must be 0.001 to 1'])
{
    my ($p, $range) = @$case;
    rejected('', $loc->("insite_gateway_service s; insite_gateway_breaker $p;"),
        qr/insite_gateway_breaker: invalid parameter "\Q$p\E": \Q$range\E/,
        "insite_gateway_breaker $p");
}
accepted('', $loc->('insite_gateway_service s; insite_gateway_breaker failures=1 '
                  . 'window=1s recovery=100ms half_open=1 ratio=1 min_requests=1;'),
         'insite_gateway_breaker at its lower bounds');

# a breaker needs a service in scope
rejected('', $loc->('insite_gateway_breaker failures=3;'),
    qr/insite_gateway_breaker .*applies to no service: no insite_gateway_service in its scope/,
    'breaker in a location without a service');
rejected('insite_gateway_breaker failures=3;', $loc->(''),
    qr/insite_gateway_breaker .*applies to no service/,
    'breaker at http level, no service anywhere');
accepted('insite_gateway_breaker failures=3;',
         $loc->('insite_gateway_service s;') . "\n        location /b { insite_healthz; }",
         'breaker at http level, a service in one location');
accepted('', "        insite_gateway_service s;\n" . $loc->('insite_gateway_breaker failures=3;'),
         'breaker in a location, the service from the server');
accepted('', $loc->('insite_gateway_breaker off;'), 'breaker off needs no service');

done_testing;
