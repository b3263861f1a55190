<?php

declare(strict_types=1);

namespace Autoheal\Sdk\Tests\Unit\Support;

use Autoheal\Sdk\Support\Text;
use PHPUnit\Framework\TestCase;

final class TextTest extends TestCase
{
    public function testHelpersPhp74Lacks(): void
    {
        self::assertTrue(Text::startsWith('https://x', 'https://'));
        self::assertFalse(Text::startsWith('http', 'https'));
        self::assertTrue(Text::endsWith('wp_molam_*', '*'));
        self::assertTrue(Text::endsWith('x', ''));
        self::assertTrue(Text::contains('wp_autoheal_journal_state', 'autoheal_journal_'));
    }

    public function testCleanMakesTextSafeForJson(): void
    {
        self::assertSame("SQLSTATE \u{fffd} x", Text::clean("SQLSTATE \xff x"));
        self::assertSame(str_repeat("\u{e9}", 5), Text::clean(str_repeat("\u{e9}", 9), 5), 'cut on characters');
        self::assertNotFalse(json_encode(Text::clean("\xc3\x28" . str_repeat('a', 600))));
        self::assertSame(500, Text::length(Text::clean(str_repeat('a', 600))));
    }
}
