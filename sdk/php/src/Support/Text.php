<?php

declare(strict_types=1);

namespace Autoheal\Sdk\Support;

/** String helpers PHP 7.4 lacks (str_starts_with & co. are PHP 8). */
final class Text
{
    private function __construct()
    {
    }

    public static function startsWith(string $haystack, string $needle): bool
    {
        return strncmp($haystack, $needle, strlen($needle)) === 0;
    }

    public static function endsWith(string $haystack, string $needle): bool
    {
        return $needle === '' || substr($haystack, -strlen($needle)) === $needle;
    }

    public static function contains(string $haystack, string $needle): bool
    {
        return $needle === '' || strpos($haystack, $needle) !== false;
    }

    /** Length in Unicode characters (the limits of the schemas count characters). */
    public static function length(string $s): int
    {
        if (preg_match('//u', $s) !== 1) {
            return strlen($s);
        }
        return (int) preg_match_all('/./us', $s);
    }

    /** At most $max characters, cut on a character boundary. */
    public static function truncate(string $s, int $max): string
    {
        if (self::length($s) <= $max) {
            return $s;
        }
        if (preg_match('//u', $s) !== 1) {
            return substr($s, 0, $max);
        }
        preg_match('/^.{0,' . $max . '}/us', $s, $m);
        return $m[0];
    }

    public static function isUtf8(string $s): bool
    {
        return preg_match('//u', $s) === 1;
    }

    /**
     * Valid UTF-8 (invalid bytes become U+FFFD), at most $max characters: for text that came
     * from elsewhere (a driver's error, a field of an unauthenticated item) before it goes
     * into an ack, the journal or a log, all of which are JSON.
     */
    public static function clean(string $s, int $max = 500): string
    {
        if (!self::isUtf8($s)) {
            $s = (string) json_decode((string) json_encode($s, JSON_INVALID_UTF8_SUBSTITUTE));
        }
        return self::truncate($s, $max);
    }
}
