<?php

declare(strict_types=1);

namespace Autoheal\Sdk\Tests\Unit\Verify;

use Autoheal\Sdk\Verify\Dsse;
use Autoheal\Sdk\Verify\KeyId;
use PHPUnit\Framework\TestCase;

final class DsseTest extends TestCase
{
    /** The example of the DSSE specification (protocol.md). */
    public function testPaeOfTheSpecificationExample(): void
    {
        self::assertSame('DSSEv1 29 http://example.com/HelloWorld 11 hello world', Dsse::pae('http://example.com/HelloWorld', 'hello world'));
    }

    public function testLengthsAreBytesNotCharacters(): void
    {
        self::assertSame("DSSEv1 4 t\u{e9}x 2 \u{e9}", Dsse::pae("t\u{e9}x", "\u{e9}"));
        self::assertSame('DSSEv1 1 t 0 ', Dsse::pae('t', ''));
    }

    public function testTypesAreDistinct(): void
    {
        self::assertNotSame(Dsse::pae(Dsse::COMMAND_TYPE, 'x'), Dsse::pae(Dsse::CERTIFICATE_TYPE, 'x'));
    }

    public function testKeyIdOfTheDevelopmentRoot(): void
    {
        // patches/bundles/*.bundle.json are signed by this key, listed under this key id.
        $pub = base64_decode(trim((string) file_get_contents(dirname(__DIR__, 5) . '/patches/dev-key/autoheal.pub')), true);
        self::assertSame('2a9241fec948d9f9', KeyId::of((string) $pub));
    }
}
