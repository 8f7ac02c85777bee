# ngx_http_insite_gateway_module: exactly one X-Request-ID reaches the
# upstream, also when the location sets one itself with proxy_set_header
# ($request_id: nginx's own id; $insite_request_id: the gateway's).  The
# backend is a raw socket server that answers with the request's header
# lines as they came over the wire, so duplicates are counted, not merged.
use strict;
use warnings;
use lib 't/lib';
use Test::More;
use Insite::Nginx;
use Insite::EchoBackend;

my $bport = Insite::EchoBackend::start();

my $ngx = Insite::Nginx->new(server => <<"SERVER");
        location /plain {
            insite_gateway_service echo;
            proxy_pass http://127.0.0.1:$bport;
        }
        location /nginx-id {
            insite_gateway_service echo;
            proxy_set_header X-Request-ID \$request_id;
            proxy_pass http://127.0.0.1:$bport;
        }
        location /gateway-id {
            insite_gateway_service echo;
            proxy_set_header X-Request-ID \$insite_request_id;
            proxy_pass http://127.0.0.1:$bport;
        }
SERVER

sub ids {
    my ($body) = @_;
    return [ map { /^X-Request-ID:\s*(.*?)\s*$/i ? $1 : () } split /\n/, $body ];
}

for my $case (['/plain', 'no proxy_set_header'],
              ['/nginx-id', 'proxy_set_header X-Request-ID $request_id'],
              ['/gateway-id', 'proxy_set_header X-Request-ID $insite_request_id'])
{
    my ($path, $what) = @$case;

    # the gateway makes the id
    my $r = $ngx->get($path);
    is($r->{status}, 200, "$what: proxied");
    my $up = ids($r->{body});
    is(scalar @$up, 1, "$what: one X-Request-ID upstream (new id)")
        or diag $r->{body};
    like($r->{headers}{'x-request-id'} // '', qr/^[0-9a-f]{32}$/, "$what: id in the response");

    # the client sends a well-formed one (the gateway keeps it)
    $r = $ngx->get($path, headers => ['X-Request-ID' => 'client-id-1']);
    $up = ids($r->{body});
    is(scalar @$up, 1, "$what: one X-Request-ID upstream (client id)")
        or diag $r->{body};
    is($r->{headers}{'x-request-id'}, 'client-id-1', "$what: the client's id answered");
    if ($path ne '/nginx-id') {
        is($up->[0], 'client-id-1', "$what: the client's id upstream");
    }

    # the client sends a malformed one (the gateway replaces it)
    $r = $ngx->get($path, headers => ['X-Request-ID' => 'bad id!']);
    $up = ids($r->{body});
    is(scalar @$up, 1, "$what: one X-Request-ID upstream (replaced id)")
        or diag $r->{body};
    unlike($r->{body}, qr/bad id!/, "$what: the malformed id does not reach the upstream");
}

# the gateway's own id and the upstream's agree where nothing overrides it
my $r = $ngx->get('/gateway-id');
is(ids($r->{body})->[0], $r->{headers}{'x-request-id'},
   '$insite_request_id upstream is the id of the response');
$r = $ngx->get('/plain');
is(ids($r->{body})->[0], $r->{headers}{'x-request-id'},
   'the added header upstream is the id of the response');

$ngx->stop;
$ngx->check_log;

done_testing;
