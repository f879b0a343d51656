#!/usr/bin/env bash
# Makes rich-notification vectors with the openssl command line only, independently of the Go code that opens
# them: a certificate and key (PEM in both key formats, and a PKCS#12 without a password), then one
# encryptedContent per case, following Microsoft's published algorithm for changeNotificationEncryptedContent:
#
#   key       32 random bytes (openssl rand)
#   dataKey   RSA-OAEP, SHA-1 and MGF1-SHA-1, of the key under the certificate   (openssl pkeyutl)
#   data      AES-256-CBC of the plaintext, IV = the key's first 16 bytes, PKCS#7 (openssl enc)
#   signature HMAC-SHA256 of the ciphertext under the key                        (openssl dgst -mac HMAC)
#
# Run it from anywhere: `bash richnotify/testdata/openssl/make-vectors.sh`. It rewrites the files beside it;
# the tests read the committed files and never need openssl. The material is for tests only.
set -euo pipefail
cd "$(dirname "$0")"
rm -f ./*.json ./*.pem ./*.b64 ./*.plain
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

# The certificate: RSA-2048, self-signed, ten years from today. Tests judge it at its notBefore plus an hour.
openssl req -x509 -newkey rsa:2048 -nodes -sha256 -days 3650 -subj /CN=richnotify-openssl-vectors \
	-keyout key-pkcs8.pem -out certificate.pem 2>/dev/null
openssl rsa -in key-pkcs8.pem -traditional -out key-pkcs1.pem 2>/dev/null
openssl x509 -in certificate.pem -pubkey -noout >"$tmp/pub.pem"
# A PKCS#12 without a password, base64 on one line, as an App Service Key Vault reference delivers it; and
# one with OpenSSL 3's default password-based encryption but an empty password, the other shape seen.
openssl pkcs12 -export -inkey key-pkcs8.pem -in certificate.pem -passout pass: -keypbe NONE -certpbe NONE \
	| base64 -w0 >certificate-nopbe.p12.b64
openssl pkcs12 -export -inkey key-pkcs8.pem -in certificate.pem -passout pass: | base64 -w0 >certificate.p12.b64
openssl pkcs12 -export -inkey key-pkcs8.pem -in certificate.pem -passout pass:secret | base64 -w0 >certificate-password.p12.b64
thumb=$(openssl x509 -in certificate.pem -noout -fingerprint -sha1 | sed 's/.*=//; s/://g')

hex() { xxd -p -c 1000 "$1"; }
b64() { base64 -w0 "$1"; }

# vector NAME EXPECT PLAINTEXT-FILE [variant]
# variant: "" | flip-bit | sign-plaintext | truncate | key16 | oaep-sha256 | pkcs1v15 | random-iv | nopad
vector() {
	local name=$1 expect=$2 plain=$3 variant=${4:-}
	local klen=32
	[ "$variant" = key16 ] && klen=16
	openssl rand "$klen" >"$tmp/key"
	local key iv
	key=$(hex "$tmp/key")
	iv=${key:0:32}
	[ "$variant" = random-iv ] && iv=$(openssl rand -hex 16)
	local cipher=aes-256-cbc
	[ "$variant" = key16 ] && cipher=aes-128-cbc
	local nopad=()
	[ "$variant" = nopad ] && nopad=(-nopad)
	openssl enc -"$cipher" -K "$key" -iv "$iv" "${nopad[@]}" -in "$plain" -out "$tmp/data"
	[ "$variant" = truncate ] && truncate -s -1 "$tmp/data"
	local signed="$tmp/data"
	[ "$variant" = sign-plaintext ] && signed=$plain
	openssl dgst -sha256 -mac HMAC -macopt hexkey:"$key" -binary "$signed" >"$tmp/sig"
	if [ "$variant" = flip-bit ]; then
		# One bit of the last ciphertext byte flipped after signing.
		local h
		h=$(hex "$tmp/data")
		local last=$((0x${h: -2} ^ 1))
		printf '%s%02x' "${h:0:${#h}-2}" "$last" | xxd -r -p >"$tmp/data"
	fi
	local oaep=(-pkeyopt rsa_padding_mode:oaep -pkeyopt rsa_oaep_md:sha1 -pkeyopt rsa_mgf1_md:sha1)
	[ "$variant" = oaep-sha256 ] && oaep=(-pkeyopt rsa_padding_mode:oaep -pkeyopt rsa_oaep_md:sha256 -pkeyopt rsa_mgf1_md:sha256)
	[ "$variant" = pkcs1v15 ] && oaep=(-pkeyopt rsa_padding_mode:pkcs1)
	openssl pkeyutl -encrypt -pubin -inkey "$tmp/pub.pem" "${oaep[@]}" -in "$tmp/key" -out "$tmp/datakey"
	cat >"$name.json" <<JSON
{
  "encryptedContent": {
    "data": "$(b64 "$tmp/data")",
    "dataKey": "$(b64 "$tmp/datakey")",
    "dataSignature": "$(b64 "$tmp/sig")",
    "encryptionCertificateId": "openssl-cert",
    "encryptionCertificateThumbprint": "$thumb"
  },
  "expect": "$expect"
}
JSON
	if [ "$expect" = decrypts ]; then cp "$plain" "$name.plain"; fi
}

# Plaintexts.
printf '%s' '{"id":"1765094400000","messageType":"message","createdDateTime":"2026-12-07T08:00:00Z","from":{"user":{"id":"00000000-0000-4000-8000-000000000002","displayName":"Grace"}},"body":{"contentType":"text","content":"made by openssl"},"channelIdentity":{"teamId":"00000000-0000-4000-8000-0000000000aa","channelId":"19:openssl@thread.tacv2"}}' >"$tmp/channel"
# Exactly 48 bytes: PKCS#7 then adds a whole block of sixteen 0x10 bytes.
printf '{"x":"%s"}' "$(printf 'a%.0s' $(seq 40))" >"$tmp/blocks"
printf '%s' '{"id":"1765094400001","chatId":"19:abc_def@unq.gbl.spaces","body":{"contentType":"html","content":"<p>héllo, wörld 👋 — «ok»</p>"}}' >"$tmp/unicode"
{
	printf '{"id":"1765094400002","body":{"contentType":"text","content":"'
	for _ in $(seq 200); do printf 'a long message line, '; done
	printf '"}}'
} >"$tmp/large"
printf '%s' 'this is not JSON' >"$tmp/notjson"
# Block-aligned plaintexts for -nopad, each ending in a bad PKCS#7 tail.
printf '{"x":"aaaaaaaaa"}' >"$tmp/base17"                          # 17 bytes
head -c 15 "$tmp/base17" >"$tmp/p15"                              # 15 bytes + 1 pad byte
{ cat "$tmp/p15"; printf '\x00'; } >"$tmp/pad-zero"               # last byte 0
{ cat "$tmp/p15"; printf '\x11'; } >"$tmp/pad-17"                 # last byte 17 > block size
{ head -c 12 "$tmp/base17"; printf '\x04\x04\x05\x04'; } >"$tmp/pad-inner" # one inner pad byte wrong
{ head -c 12 "$tmp/base17"; printf '\x03\x04\x04\x04'; } >"$tmp/pad-first" # the first pad byte wrong
{ printf '{"x":"a"}'; printf '\x07\x07\x07\x07\x07\x07\x07'; } >"$tmp/pad-good" # 9 + 7: valid, made by hand

vector valid-channel-message decrypts "$tmp/channel"
vector valid-full-pad-block decrypts "$tmp/blocks"
vector valid-unicode decrypts "$tmp/unicode"
vector valid-large decrypts "$tmp/large"
vector valid-hand-padded decrypts "$tmp/pad-good" nopad
cp "$tmp/pad-good" valid-hand-padded.plain && truncate -s 9 valid-hand-padded.plain
vector bad-signature-bit-flipped signature "$tmp/channel" flip-bit
vector bad-signature-over-plaintext signature "$tmp/channel" sign-plaintext
vector bad-padding-zero padding "$tmp/pad-zero" nopad
vector bad-padding-over-block padding "$tmp/pad-17" nopad
vector bad-padding-inner-byte padding "$tmp/pad-inner" nopad
vector bad-padding-first-byte padding "$tmp/pad-first" nopad
vector bad-block-length block-length "$tmp/channel" truncate
vector bad-key-16-bytes key-length "$tmp/channel" key16
vector bad-datakey-oaep-sha256 data-key "$tmp/channel" oaep-sha256
vector bad-datakey-pkcs1v15 data-key "$tmp/channel" pkcs1v15
vector bad-iv-random plaintext "$tmp/channel" random-iv
vector bad-plaintext-not-json plaintext "$tmp/notjson"
echo "vectors written to $(pwd)"
