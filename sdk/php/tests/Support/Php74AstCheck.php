<?php

declare(strict_types=1);

namespace Autoheal\Sdk\Tests\Support;

use PhpParser\Node;
use PhpParser\NodeTraverser;
use PhpParser\NodeVisitorAbstract;
use PhpParser\ParserFactory;

/**
 * The PHP 7.4 check on the syntax tree (nikic/php-parser 4, Debian's php-parser package):
 * every node kind PHP 8 added to the language. Complements the token scan, which also sees
 * what the tree does not keep (trailing commas, attributes' lines).
 */
final class Php74AstCheck
{
    public static function isAvailable(): bool
    {
        if (!class_exists(ParserFactory::class, false) && is_file('/usr/share/php/PhpParser/autoload.php')) {
            require_once '/usr/share/php/PhpParser/autoload.php';
        }
        return class_exists(ParserFactory::class);
    }

    /** @return list<string> */
    public static function check(string $source): array
    {
        $parser = (new ParserFactory())->create(ParserFactory::ONLY_PHP7);
        $ast = $parser->parse($source);
        $visitor = new class () extends NodeVisitorAbstract {
            /** @var list<string> */
            public array $problems = [];

            public function enterNode(Node $node)
            {
                $at = 'line ' . $node->getStartLine() . ': ';
                $php8 = [
                    Node\Expr\Match_::class => 'match',
                    Node\Expr\NullsafeMethodCall::class => '?->',
                    Node\Expr\NullsafePropertyFetch::class => '?->',
                    Node\Expr\Throw_::class => 'throw as an expression',
                    Node\UnionType::class => 'union type',
                    Node\IntersectionType::class => 'intersection type',
                    Node\VariadicPlaceholder::class => 'first-class callable',
                    Node\Stmt\Enum_::class => 'enum',
                ];
                foreach ($php8 as $class => $what) {
                    if (class_exists($class) && $node instanceof $class) {
                        $this->problems[] = $at . $what;
                    }
                }
                if ($node instanceof Node\Arg && $node->name !== null) {
                    $this->problems[] = $at . 'named argument';
                }
                if ($node instanceof Node\Param) {
                    if ($node->flags !== 0) {
                        $this->problems[] = $at . 'constructor promotion or readonly';
                    }
                    if ($node->default instanceof Node\Expr\New_) {
                        $this->problems[] = $at . 'new in an initializer';
                    }
                    $this->type($node->type, $at);
                }
                if ($node instanceof Node\FunctionLike) {
                    $this->type($node->getReturnType(), $at);
                }
                if ($node instanceof Node\Stmt\Property) {
                    if (($node->flags & 64) !== 0) {
                        $this->problems[] = $at . 'readonly';
                    }
                    $this->type($node->type, $at);
                }
                if ($node instanceof Node\Stmt\Catch_ && $node->var === null) {
                    $this->problems[] = $at . 'catch without a variable';
                }
                if ($node instanceof Node\Expr\ClassConstFetch && $node->class instanceof Node\Expr) {
                    $this->problems[] = $at . '$object::class';
                }
                return null;
            }

            /** @param Node|null $type */
            private function type($type, string $at): void
            {
                if ($type instanceof Node\NullableType) {
                    $type = $type->type;
                }
                $name = $type instanceof Node\Identifier ? $type->toLowerString() : ($type instanceof Node\Name ? $type->toLowerString() : null);
                if (in_array($name, ['mixed', 'never', 'static', 'false', 'null', 'true'], true)) {
                    $this->problems[] = $at . $name . ' type';
                }
            }
        };
        $traverser = new NodeTraverser();
        $traverser->addVisitor($visitor);
        $traverser->traverse($ast ?? []);
        return $visitor->problems;
    }
}
