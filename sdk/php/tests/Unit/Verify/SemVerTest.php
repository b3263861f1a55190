<?php

declare(strict_types=1);

namespace Autoheal\Sdk\Tests\Unit\Verify;

use Autoheal\Sdk\Verify\SemVer;
use PHPUnit\Framework\TestCase;

final class SemVerTest extends TestCase
{
    public function testPrecedenceOfTheSpecification(): void
    {
        // semver.org §11's example, ascending.
        $ordered = ['1.0.0-alpha', '1.0.0-alpha.1', '1.0.0-alpha.beta', '1.0.0-beta', '1.0.0-beta.2', '1.0.0-beta.11', '1.0.0-rc.1', '1.0.0', '1.0.2', '1.0.10', '1.2.0', '2.0.0', '10.0.0'];
        for ($i = 0; $i + 1 < count($ordered); $i++) {
            self::assertLessThan(0, SemVer::compare($ordered[$i], $ordered[$i + 1]), $ordered[$i] . ' < ' . $ordered[$i + 1]);
            self::assertGreaterThan(0, SemVer::compare($ordered[$i + 1], $ordered[$i]));
        }
        self::assertSame(0, SemVer::compare('1.0.3', '1.0.3'));
        self::assertSame(0, SemVer::compare('1.0.3+build.1', '1.0.3+build.2'), 'build metadata does not order');
        self::assertLessThan(0, SemVer::compare('99999999999999999999.0.0', '100000000000000000000.0.0'));
    }

    public function testStrictParsing(): void
    {
        foreach (['1.0.0', '0.0.1', '1.2.3-rc.1+sha.5114f85'] as $ok) {
            self::assertTrue(SemVer::isValid($ok), $ok);
        }
        foreach (['1.0', 'v1.0.0', '01.0.0', '1.0.0-', '1.0.0-01', ' 1.0.0', '1.0.0 ', "1.0.0\n", '1.0.0+'] as $bad) {
            self::assertFalse(SemVer::isValid($bad), json_encode($bad));
        }
    }
}
