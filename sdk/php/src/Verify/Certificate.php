<?php

declare(strict_types=1);

namespace Autoheal\Sdk\Verify;

use Autoheal\Sdk\Support\Json;
use Autoheal\Sdk\Support\JsonException;
use Autoheal\Sdk\Support\Text;
use Autoheal\Sdk\Time\Instant;
use Autoheal\Sdk\Time\InvalidTimestamp;

/** A root's statement that a command key may sign commands between two instants. */
final class Certificate
{
    private string $keyId;
    private string $publicKey;
    private Instant $notBefore;
    private Instant $notAfter;

    private function __construct(string $keyId, string $publicKey, Instant $notBefore, Instant $notAfter)
    {
        $this->keyId = $keyId;
        $this->publicKey = $publicKey;
        $this->notBefore = $notBefore;
        $this->notAfter = $notAfter;
    }

    /**
     * Parses the (already authentic) payload: check 5.
     *
     * @throws Refusal certificate_invalid
     */
    public static function parse(string $payload): self
    {
        try {
            $decoded = Json::decode($payload);
        } catch (JsonException $e) {
            throw new Refusal(Reason::CERTIFICATE_INVALID, 'the certificate payload is not JSON');
        }
        $shape = Shape::of($decoded, Reason::CERTIFICATE_INVALID, 'certificate')
            ->only(['certificate_format', 'role', 'key_id', 'public_key', 'not_before', 'not_after']);
        if ($shape->int('certificate_format') !== 1) {
            throw $shape->refuse('has certificate_format ' . $shape->int('certificate_format') . ', this SDK reads 1');
        }
        if ($shape->string('role') !== 'command') {
            throw $shape->refuse('is for role `' . Text::clean($shape->string('role'), 64) . '`, not `command`');
        }
        $keyId = $shape->string('key_id');
        try {
            $notBefore = Instant::parse($shape->string('not_before'));
            $notAfter = Instant::parse($shape->string('not_after'));
        } catch (InvalidTimestamp $e) {
            throw $shape->refuse('validity is not RFC 3339 UTC');
        }
        // Inside the authentic payload a bad key is a bad certificate (not a base64 refusal).
        $text = $shape->string('public_key');
        $publicKey = Base64::isCanonical($text) ? (string) base64_decode($text, true) : '';
        if (strlen($publicKey) !== SODIUM_CRYPTO_SIGN_PUBLICKEYBYTES || !self::isPoint($publicKey)) {
            throw $shape->refuse('public_key is not the canonical base64 of an ed25519 public key');
        }
        if (!hash_equals(KeyId::of($publicKey), $keyId)) {
            throw $shape->refuse('key_id is not the key id of public_key');
        }
        if (!$notBefore->isBefore($notAfter)) {
            throw $shape->refuse('is valid for no time (not_before is not before not_after)');
        }
        return new self($keyId, $publicKey, $notBefore, $notAfter);
    }

    /** A valid ed25519 public key (libsodium refuses to convert anything else). */
    private static function isPoint(string $publicKey): bool
    {
        try {
            sodium_crypto_sign_ed25519_pk_to_curve25519($publicKey);
            return true;
        } catch (\SodiumException $e) {
            return false;
        }
    }

    /** Check 6: not_before ≤ now < not_after. */
    public function checkValidAt(Instant $now): void
    {
        if ($now->isBefore($this->notBefore)) {
            throw new Refusal(Reason::CERTIFICATE_NOT_YET_VALID, 'the command key certificate is valid from ' . $this->notBefore->format());
        }
        if (!$now->isBefore($this->notAfter)) {
            throw new Refusal(Reason::CERTIFICATE_EXPIRED, 'the command key certificate expired at ' . $this->notAfter->format());
        }
    }

    public function keyId(): string
    {
        return $this->keyId;
    }

    public function publicKey(): string
    {
        return $this->publicKey;
    }
}
