<?php

declare(strict_types=1);

namespace Autoheal\Sdk\Tests\Unit\Time;

use Autoheal\Sdk\Time\Instant;
use Autoheal\Sdk\Time\InvalidTimestamp;
use PHPUnit\Framework\TestCase;

final class InstantTest extends TestCase
{
    public function testParsesRfc3339Utc(): void
    {
        self::assertSame(1796205600, Instant::parse('2026-12-02T10:00:00Z')->unixSeconds());
        self::assertSame(1796205600, Instant::parse('2026-12-02T10:00:00+00:00')->unixSeconds());
        self::assertSame(951782400, Instant::parse('2000-02-29T00:00:00Z')->unixSeconds());
        self::assertSame(-1, Instant::parse('1969-12-31T23:59:59Z')->unixSeconds());
        self::assertSame('2026-12-02T10:00:00.25Z', Instant::parse('2026-12-02T10:00:00.250000000Z')->format());
    }

    public function testOrdersWithFractions(): void
    {
        $a = Instant::parse('2026-12-02T10:59:59.999999999Z');
        $b = Instant::parse('2026-12-02T11:00:00Z');
        self::assertTrue($a->isBefore($b));
        self::assertFalse($b->isBefore($b));
        self::assertSame(0, $b->compare(Instant::fromUnix($b->unixSeconds())));
    }

    /** @return array<string, array{string}> */
    public function invalid(): array
    {
        return array_map(static fn (string $s): array => [$s], [
            'offset' => '2026-12-02T10:00:00+01:00',
            'no zone' => '2026-12-02T10:00:00',
            'lower case' => '2026-12-02t10:00:00z',
            'space' => '2026-12-02 10:00:00Z',
            'february 30' => '2026-02-30T10:00:00Z',
            'february 29 of 1900' => '1900-02-29T00:00:00Z',
            'hour 24' => '2026-12-02T24:00:00Z',
            'leap second' => '2026-12-31T23:59:60Z',
            'ten fraction digits' => '2026-12-02T10:00:00.1234567890Z',
            'trailing newline' => "2026-12-02T10:00:00Z\n",
            'date only' => '2026-12-02',
        ]);
    }

    /** @dataProvider invalid */
    public function testRefusesEverythingElse(string $text): void
    {
        $this->expectException(InvalidTimestamp::class);
        Instant::parse($text);
    }
}
