<?php

declare(strict_types=1);

namespace Autoheal\Sdk\Tests\Unit\Verify;

use Autoheal\Sdk\Verify\Base64;
use Autoheal\Sdk\Verify\Reason;
use Autoheal\Sdk\Verify\Refusal;
use PHPUnit\Framework\TestCase;

final class Base64Test extends TestCase
{
    public function testCanonicalTextDecodes(): void
    {
        self::assertSame('hello', Base64::decode('aGVsbG8=', 'x'));
        self::assertSame('', Base64::decode('', 'x'));
        self::assertSame("\xff\xfe", Base64::decode('//4=', 'x'));
    }

    /** @return array<string, array{string}> */
    public function nonCanonical(): array
    {
        return [
            'missing padding' => ['aGVsbG8'],
            'extra padding' => ['aGVsbG8=='],
            'inner whitespace' => ['aGVs bG8='],
            'newline' => ["aGVsbG8=\n"],
            'leading space' => [' aGVsbG8='],
            'url-safe alphabet' => ['__4='],
            'url-safe minus' => ['-_4='],
            'non-zero trailing bits' => ['aGVsbG9='],
            'non-zero trailing bits, two pads' => ['aGVsbB=='],
            'not base64' => ['!!!!'],
            'padding inside' => ['aG=sbG8='],
        ];
    }

    /** @dataProvider nonCanonical */
    public function testNonCanonicalTextIsRefused(string $text): void
    {
        self::assertFalse(Base64::isCanonical($text));
        try {
            Base64::decode($text, 'field');
            self::fail('accepted ' . json_encode($text));
        } catch (Refusal $r) {
            self::assertSame(Reason::NON_CANONICAL_BASE64, $r->reason());
            self::assertStringContainsString('field', $r->getMessage());
        }
    }

    public function testRoundTripOfRandomBytes(): void
    {
        for ($n = 1; $n < 70; $n++) {
            $bytes = random_bytes($n);
            self::assertSame($bytes, Base64::decode(base64_encode($bytes), 'x'));
        }
    }
}
