<?php

declare(strict_types=1);

namespace Autoheal\Sdk\Support;

/**
 * JSON with no guessing. Decoding keeps objects as \stdClass so that `{}` and `[]` stay
 * distinct (an associative decode turns both into an empty array, and `{"0":…}` into a
 * list), which the protocol's type checks depend on. Big integers come back as strings so
 * they are refused as non-integers instead of silently becoming floats.
 */
final class Json
{
    private const DEPTH = 64;

    private function __construct()
    {
    }

    /**
     * @return mixed \stdClass for objects, list arrays for arrays, scalars, null
     * @throws JsonException
     */
    public static function decode(string $bytes)
    {
        try {
            return json_decode($bytes, false, self::DEPTH, JSON_THROW_ON_ERROR | JSON_BIGINT_AS_STRING);
        } catch (\JsonException $e) {
            throw new JsonException('not valid JSON: ' . $e->getMessage(), 0, $e);
        }
    }

    /**
     * A JSON object, decoded as an associative array (for answers whose shape is checked
     * field by field afterwards).
     *
     * @return array<string, mixed>
     * @throws JsonException
     */
    public static function decodeObject(string $bytes): array
    {
        $value = self::decode($bytes);
        if (!$value instanceof \stdClass) {
            throw new JsonException('expected a JSON object');
        }
        return self::toArray($value);
    }

    /**
     * Objects to associative arrays, recursively (after the type checks that needed them).
     *
     * @param mixed $value
     * @return mixed
     */
    public static function toArray($value)
    {
        if ($value instanceof \stdClass) {
            $value = get_object_vars($value);
        }
        if (is_array($value)) {
            foreach ($value as $k => $v) {
                $value[$k] = self::toArray($v);
            }
        }
        return $value;
    }

    /**
     * Compact JSON; slashes and Unicode unescaped, as the server writes it.
     *
     * @param mixed $value
     * @throws JsonException
     */
    public static function encode($value): string
    {
        try {
            return json_encode(
                $value,
                JSON_THROW_ON_ERROR | JSON_UNESCAPED_SLASHES | JSON_UNESCAPED_UNICODE | JSON_PRESERVE_ZERO_FRACTION,
                self::DEPTH
            );
        } catch (\JsonException $e) {
            throw new JsonException('cannot encode as JSON: ' . $e->getMessage(), 0, $e);
        }
    }

    /**
     * An associative array as a JSON object even when empty (`[]` would encode as a list).
     *
     * @param array<string, mixed> $map
     */
    public static function object(array $map): object
    {
        return (object) $map;
    }
}
