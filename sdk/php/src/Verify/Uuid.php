<?php

declare(strict_types=1);

namespace Autoheal\Sdk\Verify;

/**
 * UUIDs as the server reads them (Rust's uuid crate): hyphenated, simple (32 hex digits),
 * braced or urn:uuid:, hex in either case — all the same id, compared in one form.
 */
final class Uuid
{
    private function __construct()
    {
    }

    /** The lower-case hyphenated form, or null when $text is no UUID. */
    public static function normalize(string $text): ?string
    {
        if (preg_match('/^(?:urn:uuid:)?([0-9A-Fa-f]{8})-([0-9A-Fa-f]{4})-([0-9A-Fa-f]{4})-([0-9A-Fa-f]{4})-([0-9A-Fa-f]{12})$/D', $text, $m) === 1
            || preg_match('/^\{([0-9A-Fa-f]{8})-([0-9A-Fa-f]{4})-([0-9A-Fa-f]{4})-([0-9A-Fa-f]{4})-([0-9A-Fa-f]{12})\}$/D', $text, $m) === 1
            || preg_match('/^([0-9A-Fa-f]{8})([0-9A-Fa-f]{4})([0-9A-Fa-f]{4})([0-9A-Fa-f]{4})([0-9A-Fa-f]{12})$/D', $text, $m) === 1) {
            return strtolower($m[1] . '-' . $m[2] . '-' . $m[3] . '-' . $m[4] . '-' . $m[5]);
        }
        return null;
    }
}
