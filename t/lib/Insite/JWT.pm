package Insite::JWT;

# Keys and tokens as identity providers make them, made by the openssl
# command line (no Perl crypto modules needed):
#
#   my $k = Insite::JWT::key('rsa', $dir, 'kid-1');   # rsa ec256 ec384 ed25519
#   my $jwks = Insite::JWT::jwks($k1, $k2);            # {"keys":[...]}
#   my $t = Insite::JWT::sign($k, 'RS256', {sub => 'alice'}, {kid => 'x'});
#   my $h = Insite::JWT::hs256('secret', {sub => 'alice'}, {alg => 'HS256'});
#
# sign() takes the header's alg from its argument, not from the key, so a
# test can present a token whose header lies about its key.

use strict;
use warnings;

use Digest::SHA qw(hmac_sha256);
use File::Temp ();
use JSON::PP ();
use MIME::Base64 qw(encode_base64url);

my $JSON = JSON::PP->new->canonical;

sub _run {
    my ($cmd, $in) = @_;
    my $dir = File::Temp::tempdir(CLEANUP => 1);
    my $inf = "$dir/in";
    if (defined $in) {
        open my $fh, '>:raw', $inf or die "$inf: $!";
        print $fh $in;
        close $fh;
    }
    $cmd =~ s/\{in\}/$inf/g;
    my $out = `$cmd 2>$dir/err`;
    die "$cmd failed: " . `cat $dir/err` if $?;
    return $out;
}

sub _der_public {
    my ($pem) = @_;
    return _run("openssl pkey -in $pem -pubout -outform DER");
}

# a key: {type, pem, kid, jwk (public, as a hash)}
sub key {
    my ($type, $dir, $kid) = @_;
    my $pem = "$dir/$kid.pem";
    my %gen = (
        rsa     => "openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:2048",
        ec256   => "openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256",
        ec384   => "openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-384",
        ed25519 => "openssl genpkey -algorithm ed25519",
    );
    _run("$gen{$type} -out $pem");

    my %jwk;
    if ($type eq 'rsa') {
        my $mod = _run("openssl rsa -in $pem -noout -modulus");
        $mod =~ /Modulus=([0-9A-F]+)/ or die "no modulus";
        %jwk = (kty => 'RSA', n => encode_base64url(pack 'H*', $1),
                e => 'AQAB');
    } elsif ($type =~ /^ec(\d+)$/) {
        my $size = $1 == 256 ? 32 : 48;
        my $der = _der_public($pem);
        my $pt = substr($der, -(1 + 2 * $size));
        die "not an uncompressed point" unless substr($pt, 0, 1) eq "\x04";
        %jwk = (kty => 'EC', crv => $1 == 256 ? 'P-256' : 'P-384',
                x => encode_base64url(substr($pt, 1, $size)),
                y => encode_base64url(substr($pt, 1 + $size, $size)));
    } else {
        my $der = _der_public($pem);
        %jwk = (kty => 'OKP', crv => 'Ed25519',
                x => encode_base64url(substr($der, -32)));
    }
    $jwk{kid} = $kid if defined $kid;
    $jwk{use} = 'sig';
    # the PEM of the public key: what an attacker would use as HMAC secret
    my $pub = _run("openssl pkey -in $pem -pubout");
    return { type => $type, pem => $pem, kid => $kid, jwk => \%jwk,
             public_pem => $pub };
}

# a JWKS document; key hashes, or [key, {extra members}] pairs
sub jwks {
    my @keys = map {
        ref $_ eq 'ARRAY' ? { %{ $_->[0]{jwk} }, %{ $_->[1] } } : $_->{jwk}
    } @_;
    return $JSON->encode({ keys => \@keys });
}

sub _input {
    my ($header, $claims) = @_;
    return encode_base64url($JSON->encode($header)) . '.'
         . encode_base64url(ref $claims ? $JSON->encode($claims) : $claims);
}

# DER ECDSA-Sig-Value -> JOSE r||s of size bytes each
sub _der_to_raw {
    my ($der, $size) = @_;
    my @b = unpack 'C*', $der;
    my $i = 2;
    $i++ if $b[1] & 0x80;
    my @ints;
    for (1 .. 2) {
        die "bad DER" unless $b[$i] == 0x02;
        my $len = $b[$i + 1];
        my $v = pack 'C*', @b[$i + 2 .. $i + 1 + $len];
        $v =~ s/^\x00+//;
        push @ints, ("\x00" x ($size - length $v)) . $v;
        $i += 2 + $len;
    }
    return join '', @ints;
}

# signs with the key as alg says (RS*, PS256, ES*, EdDSA); header extra
# members (kid...) from $hdr; the header's alg may be overridden by
# $hdr->{alg} to lie about the signature
sub sign {
    my ($key, $alg, $claims, $hdr) = @_;
    my %h = (typ => 'JWT', alg => $alg);
    $h{kid} = $key->{kid} if defined $key->{kid};
    %h = (%h, %{ $hdr // {} });
    delete $h{$_} for grep { !defined $h{$_} } keys %h;
    my $input = _input(\%h, $claims);
    my $pem = $key->{pem};
    my $sig;
    if ($alg =~ /^RS(\d+)$/) {
        $sig = _run("openssl dgst -sha$1 -sign $pem {in}", $input);
    } elsif ($alg eq 'PS256') {
        $sig = _run("openssl dgst -sha256 -sigopt rsa_padding_mode:pss "
                    . "-sigopt rsa_pss_saltlen:digest -sign $pem {in}", $input);
    } elsif ($alg =~ /^ES(\d+)$/) {
        my $der = _run("openssl dgst -sha$1 -sign $pem {in}", $input);
        $sig = _der_to_raw($der, $1 == 256 ? 32 : 48);
    } elsif ($alg eq 'EdDSA') {
        $sig = _run("openssl pkeyutl -sign -inkey $pem -rawin -in {in}", $input);
    } else {
        die "sign: no algorithm $alg";
    }
    return "$input." . encode_base64url($sig);
}

# HS256 with any bytes as the secret (a public key's PEM, for confusion)
sub hs256 {
    my ($secret, $claims, $hdr) = @_;
    my %h = (typ => 'JWT', alg => 'HS256', %{ $hdr // {} });
    my $input = _input(\%h, $claims);
    return "$input." . encode_base64url(hmac_sha256($input, $secret));
}

# a token with any header and no signature ("alg":"none")
sub unsigned {
    my ($claims, $hdr) = @_;
    return _input({ alg => 'none', %{ $hdr // {} } }, $claims) . '.';
}

1;
