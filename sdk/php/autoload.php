<?php

declare(strict_types=1);

// A PSR-4 autoloader for installs without Composer (WordPress plugins usually ship their
// dependencies copied in): `require __DIR__ . '/sdk/autoload.php';`. Composer users rely on
// composer.json's own autoload section instead; both map Autoheal\Sdk\ to src/.
spl_autoload_register(static function (string $class): void {
    $prefix = 'Autoheal\\Sdk\\';
    if (strncmp($class, $prefix, strlen($prefix)) !== 0) {
        return;
    }
    $relative = substr($class, strlen($prefix));
    // A class name is never a path: refuse anything that could leave src/.
    if (preg_match('/^[A-Za-z_][A-Za-z0-9_]*(\\\\[A-Za-z_][A-Za-z0-9_]*)*$/', $relative) !== 1) {
        return;
    }
    $file = __DIR__ . '/src/' . str_replace('\\', '/', $relative) . '.php';
    if (is_file($file)) {
        require $file;
    }
});
