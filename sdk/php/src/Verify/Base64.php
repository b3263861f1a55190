<?php

declare(strict_types=1);

namespace Autoheal\Sdk\Verify;

/**
 * Canonical standard base64 (RFC 4648 §4, padded): the only text that decodes to given
 * bytes. `base64_decode($s, true)` alone accepts whitespace and non-zero trailing bits, so
 * two different texts could carry the same bytes; encoding the result again and comparing
 * closes that.
 */
final class Base64
{
    private function __construct()
    {
    }

    /** @throws Refusal non_canonical_base64 */
    public static function decode(string $text, string $what): string
    {
        $bytes = base64_decode($text, true);
        if ($bytes === false || base64_encode($bytes) !== $text) {
            throw new Refusal(Reason::NON_CANONICAL_BASE64, $what . ' is not canonical base64');
        }
        return $bytes;
    }

    public static function isCanonical(string $text): bool
    {
        $bytes = base64_decode($text, true);
        return $bytes !== false && base64_encode($bytes) === $text;
    }
}
