<?php

declare(strict_types=1);

namespace Autoheal\Sdk\Verify;

/**
 * Semantic versions (semver.org 2.0.0): strict parsing and precedence. Numbers compare as
 * digit strings, so no version is too large to order; build metadata does not order.
 */
final class SemVer
{
    private const PATTERN = '/^(0|[1-9]\d*)\.(0|[1-9]\d*)\.(0|[1-9]\d*)'
        . '(?:-((?:0|[1-9]\d*|\d*[a-zA-Z-][0-9a-zA-Z-]*)(?:\.(?:0|[1-9]\d*|\d*[a-zA-Z-][0-9a-zA-Z-]*))*))?'
        . '(?:\+([0-9a-zA-Z-]+(?:\.[0-9a-zA-Z-]+)*))?$/D';

    private function __construct()
    {
    }

    public static function isValid(string $version): bool
    {
        return preg_match(self::PATTERN, $version) === 1;
    }

    /** <0, 0, >0 as $a precedes, equals or follows $b. */
    public static function compare(string $a, string $b): int
    {
        [$coreA, $preA] = self::split($a);
        [$coreB, $preB] = self::split($b);
        for ($i = 0; $i < 3; $i++) {
            $c = self::compareNumbers($coreA[$i], $coreB[$i]);
            if ($c !== 0) {
                return $c;
            }
        }
        // A pre-release precedes its release.
        if ($preA === null || $preB === null) {
            return ($preA === null ? 1 : 0) - ($preB === null ? 1 : 0);
        }
        $partsA = explode('.', $preA);
        $partsB = explode('.', $preB);
        for ($i = 0; $i < min(count($partsA), count($partsB)); $i++) {
            $numA = preg_match('/^\d+$/D', $partsA[$i]) === 1;
            $numB = preg_match('/^\d+$/D', $partsB[$i]) === 1;
            if ($numA && $numB) {
                $c = self::compareNumbers($partsA[$i], $partsB[$i]);
            } elseif ($numA !== $numB) {
                $c = $numA ? -1 : 1;   // numeric identifiers precede alphanumeric ones
            } else {
                $c = strcmp($partsA[$i], $partsB[$i]) <=> 0;
            }
            if ($c !== 0) {
                return $c;
            }
        }
        return count($partsA) <=> count($partsB);
    }

    /** @return array{0: list<string>, 1: ?string} */
    private static function split(string $version): array
    {
        if (preg_match(self::PATTERN, $version, $m) !== 1) {
            throw new \InvalidArgumentException('not a semantic version');
        }
        return [[$m[1], $m[2], $m[3]], isset($m[4]) && $m[4] !== '' ? $m[4] : null];
    }

    private static function compareNumbers(string $a, string $b): int
    {
        return strlen($a) !== strlen($b) ? strlen($a) <=> strlen($b) : strcmp($a, $b) <=> 0;
    }
}
