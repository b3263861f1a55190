<?php

declare(strict_types=1);

namespace Autoheal\Sdk\Database;

use Autoheal\Sdk\Operations\Syntax;

/** Helpers both dialects share. */
final class Identifier
{
    private function __construct()
    {
    }

    /** Quoted with $quote, after the identifier rule (so no quote can appear inside). */
    public static function quote(string $identifier, string $quote): string
    {
        if (!Syntax::isIdentifier($identifier)) {
            throw new \InvalidArgumentException('not an SQL identifier: ' . substr($identifier, 0, 80));
        }
        return $quote . $identifier . $quote;
    }

    /** Upper case outside single-quoted literals, so `enum('paid')` keeps its values. */
    public static function upperType(string $type): string
    {
        $parts = preg_split("/('(?:[^']|'')*')/", $type, -1, PREG_SPLIT_DELIM_CAPTURE);
        if ($parts === false) {
            return strtoupper($type);
        }
        foreach ($parts as $i => $part) {
            if ($i % 2 === 0) {
                $parts[$i] = strtoupper($part);
            }
        }
        return implode('', $parts);
    }
}
