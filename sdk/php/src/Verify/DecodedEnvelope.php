<?php

declare(strict_types=1);

namespace Autoheal\Sdk\Verify;

/** An envelope whose base64 decoded canonically; its payload is not trusted until verified. */
final class DecodedEnvelope
{
    private string $payloadType;
    private string $payload;
    /** @var list<array{keyid: string, sig: string}> signatures as raw bytes */
    private array $signatures;

    /** @param list<array{keyid: string, sig: string}> $signatures */
    public function __construct(string $payloadType, string $payload, array $signatures)
    {
        $this->payloadType = $payloadType;
        $this->payload = $payload;
        $this->signatures = $signatures;
    }

    /**
     * Checks the signatures over PAE(payloadType, payload): at least one by a key in $keys
     * ($unknownReason otherwise), and every one by such a key verifies ($invalidReason
     * otherwise; never skipped). Signatures by other keys are skipped. Returns the payload,
     * now authentic.
     *
     * @param array<string, string> $keys key id => 32-byte public key
     * @throws Refusal
     */
    public function verifiedPayload(array $keys, string $unknownReason, string $invalidReason, string $what): string
    {
        $message = Dsse::pae($this->payloadType, $this->payload);
        $known = false;
        foreach ($this->signatures as $s) {
            if (!isset($keys[$s['keyid']])) {
                continue;
            }
            $known = true;
            if (!self::verifies($s['sig'], $message, $keys[$s['keyid']])) {
                throw new Refusal($invalidReason, $what . ': the signature by key ' . $s['keyid'] . ' does not verify');   // a known key id: 16 hex
            }
        }
        if (!$known) {
            throw new Refusal($unknownReason, $what . ' carries no signature by ' . (count($keys) === 1 ? 'key ' . implode('', array_keys($keys)) : 'a trusted key'));
        }
        return $this->payload;
    }

    /** A detached ed25519 signature; a wrong length is a failed signature, not an error. */
    public static function verifies(string $signature, string $message, string $publicKey): bool
    {
        if (strlen($signature) !== SODIUM_CRYPTO_SIGN_BYTES || strlen($publicKey) !== SODIUM_CRYPTO_SIGN_PUBLICKEYBYTES) {
            return false;
        }
        return sodium_crypto_sign_verify_detached($signature, $message, $publicKey);
    }
}
