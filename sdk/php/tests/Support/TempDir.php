<?php

declare(strict_types=1);

namespace Autoheal\Sdk\Tests\Support;

/** A fresh directory per test, removed with everything in it. */
final class TempDir
{
    public static function create(string $label = 'test'): string
    {
        $dir = sys_get_temp_dir() . '/autoheal-sdk-' . $label . '-' . bin2hex(random_bytes(6));
        mkdir($dir, 0700, true);
        return $dir;
    }

    public static function remove(string $dir): void
    {
        if (!is_dir($dir)) {
            return;
        }
        $items = new \RecursiveIteratorIterator(new \RecursiveDirectoryIterator($dir, \FilesystemIterator::SKIP_DOTS), \RecursiveIteratorIterator::CHILD_FIRST);
        foreach ($items as $item) {
            $item->isDir() && !$item->isLink() ? rmdir($item->getPathname()) : unlink($item->getPathname());
        }
        rmdir($dir);
    }
}
